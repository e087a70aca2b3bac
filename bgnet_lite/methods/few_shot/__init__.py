"""Foreground-generalization (few-shot) methods of Table 2 behind the pair contract (chapter 9).

Importing this package registers its methods.
"""

# in the order of the paper's Table 2
from bgnet_lite.methods.few_shot import tgrnet as _tgrnet  # noqa: F401, I001
from bgnet_lite.methods.few_shot import pfenet as _pfenet  # noqa: F401
