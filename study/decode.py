"""Decode carried lossless WebP images (folder) into one uint8 array (study/cache/<name>.npy)."""
import sys
from pathlib import Path
import numpy as np
from PIL import Image
src = Path(sys.argv[1])
a = np.stack([np.asarray(Image.open(f).convert("L")) for f in sorted(src.glob("*.webp"))])
np.save(sys.argv[2], a)
print(src, a.shape)
