"""Write a project's stored vectors in truth.csv row order, for study/evalfeat.py.

Run: python study/project_features.py PROJECT TRUTH_CSV OUT.npy [ARRAY]   (ARRAY: embeddings by default)
"""
import csv
import sys

import numpy as np

from labeler.project import Project

project, truth, out = sys.argv[1:4]
p = Project(project)
row_of = {r["path"].split("/")[-1]: int(r["row"]) for r in p.store.image_table()}
names = [r["path"] for r in csv.DictReader(open(truth))]
x = np.asarray(p.load_array(sys.argv[4] if len(sys.argv) > 4 else "embeddings"))
np.save(out, x[[row_of[n] for n in names]])
print(out, x.shape)
