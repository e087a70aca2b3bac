"""Background-generalization methods of Table 2: Siamese encoders comparing template and
sample (chapter 9).

Importing this package registers its methods.
"""

# imported in the order of the paper's Table 2
from bgnet_lite.methods.siamese import siamese_unet  # noqa: F401, I001  ("siamese-unet")
from bgnet_lite.methods.siamese import dsssnet  # noqa: F401  ("dsssnet")
from bgnet_lite.methods.siamese import gwnet  # noqa: F401  ("gwnet")
