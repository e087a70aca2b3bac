"""The "classical" methods of Table 2: template and sample concatenated into one network
(6 channels for RGB; chapter 9).

Importing this package registers its methods.
"""

# registration order = the rows of the paper's Table 2
from bgnet_lite.methods.concat import unet as _unet  # noqa: F401, I001
from bgnet_lite.methods.concat import fcn as _fcn  # noqa: F401
from bgnet_lite.methods.concat import segnet as _segnet  # noqa: F401
from bgnet_lite.methods.concat import deeplabv3plus as _deeplabv3plus  # noqa: F401
from bgnet_lite.methods.concat import pganet as _pganet  # noqa: F401
