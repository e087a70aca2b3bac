"""Attention-based methods of Table 2, fed the concatenated pair (chapter 9).

Importing this package registers its methods.
"""

# registration order = the paper's Table 2 rows
from bgnet_lite.methods.attention_nets import ccnet as _ccnet  # noqa: F401, I001
from bgnet_lite.methods.attention_nets import dunet as _dunet  # noqa: F401
from bgnet_lite.methods.attention_nets import danet as _danet  # noqa: F401
from bgnet_lite.methods.attention_nets import swin_unet as _swin_unet  # noqa: F401
