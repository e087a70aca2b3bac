"""Build a bgnet-lite dataset from DeepPCB with honest pixel masks (chapter 1).

    python data_scripts/prepare_deeppcb.py OUT [--source PATH | --download] [--size N]
        [--misalign M] [--seed S] [--limit K]

The work is done by ``bgnet_lite.data.deeppcb``; this script only makes it runnable from a
checkout without installing the package.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgnet_lite.data.deeppcb import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
