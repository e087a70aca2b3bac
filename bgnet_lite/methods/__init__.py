"""Every method of the book behind one contract, created by name (chapter 7).

    model = create_model("bgnet-s5", num_classes=1, in_channels=3, weights="none")
    logits = model(template, sample)  # [N, 1, H, W]

See ``registry.py`` for the contract; ``bgnet/`` holds the paper's model.
"""

# importing a family registers its methods, in the order of the paper's Table 2
from bgnet_lite.methods import concat as _concat  # noqa: F401, I001
from bgnet_lite.methods import attention_nets as _attention_nets  # noqa: F401
from bgnet_lite.methods import few_shot as _few_shot  # noqa: F401
from bgnet_lite.methods import siamese as _siamese  # noqa: F401
from bgnet_lite.methods import bgnet as _bgnet  # noqa: F401  (registers bgnet-s1 .. bgnet-s5)
from bgnet_lite.methods import registration as _registration  # noqa: F401
from bgnet_lite.methods.bgnet import method_name
from bgnet_lite.methods.registry import (
    FAMILIES,
    MethodEntry,
    create_model,
    get_method,
    method_names,
    register_method,
    unregister_method,
)

__all__ = ["FAMILIES", "MethodEntry", "create_model", "get_method", "method_name",
           "method_names", "register_method", "unregister_method"]
