"""The serve command: the annotators' dashboard over HTTP, loopback unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import click

from .options import PROJECT, open_project, warn


def _is_loopback(host: str) -> bool:
    import ipaddress

    h = host.strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


@click.command()
@PROJECT
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (127.0.0.1 = this machine only).")
@click.option("--port", default=8050, show_default=True, type=click.IntRange(1, 65535))
@click.option("--auth", default=None, envvar="LABELER_AUTH",
              help="user:password for HTTP basic auth, one user (env LABELER_AUTH).")
@click.option("--auth-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              envvar="LABELER_AUTH_FILE",
              help="File of user:hash lines, hashes from werkzeug.security.generate_password_hash "
                   "(env LABELER_AUTH_FILE). The logged-in user is the annotator.")
@click.option("--allowed-host", "allowed_hosts", multiple=True,
              help="Host name the dashboard answers to besides localhost/127.0.0.1/::1 (repeatable); "
                   "other Host headers get 400 (DNS-rebinding guard).")
@click.option("--max-request-mb", type=click.FloatRange(0.1, 10_000), default=50, show_default=True,
              help="Largest request body accepted (413 above it).")
@click.option("--insecure-no-auth", is_flag=True,
              help="Allow a non-loopback --host without auth (anyone who can reach it can label).")
@click.option("--debug", is_flag=True, help="Dash/Werkzeug debug mode (loopback only: it runs code on request).")
def serve(project_dir, host, port, auth, auth_file, allowed_hosts, max_request_mb, insecure_no_auth, debug):
    """Serve the annotator dashboard.

    Binding beyond this machine needs --auth or --auth-file (or --insecure-no-auth).
    Make an auth file line with:
    python -c "from werkzeug.security import generate_password_hash as h; print('ana:' + h('secret'))"

    \b
    Example:
      labeler serve --project data/projects/elpv --port 8050
      labeler serve --project data/projects/elpv --host 0.0.0.0 --auth-file users.txt --allowed-host labels.example.org
    """
    from ..app import create_app

    loopback = _is_loopback(host)
    if debug and not loopback:
        raise click.UsageError("--debug exposes the Werkzeug debugger: only with a loopback --host")
    if not loopback and not (auth or auth_file) and not insecure_no_auth:
        raise click.UsageError(
            f"--host {host} is reachable from other machines: give --auth-file or --auth "
            "(or --insecure-no-auth if the network is trusted)")
    hosts = list(allowed_hosts)
    if not loopback:
        import socket

        if host not in ("0.0.0.0", "::", "[::]"):
            hosts.append(host)
        else:
            hosts += [socket.gethostname(), socket.getfqdn()]
    app = create_app(open_project(project_dir), auth=auth, auth_file=auth_file, allowed_hosts=hosts,
                     max_content_length=int(max_request_mb * 1024 * 1024))
    click.echo(f"labeler dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    if not loopback:
        click.echo(f"answering Host names: localhost, 127.0.0.1, ::1, {', '.join(hosts)} "
                   "(add more with --allowed-host)")
    if not (auth or auth_file) and not loopback:
        warn("no authentication: anyone who can reach this address can label")
    app.run(host=host, port=port, debug=debug)


COMMANDS = (serve,)
