"""Beyond the paper: classical registration + differencing, no learning (chapter 9).

Importing this package registers its methods.
"""

from bgnet_lite.methods.registration import aoi as _aoi  # noqa: F401  (registers classical-aoi)
