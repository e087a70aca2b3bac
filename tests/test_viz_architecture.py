"""The architecture figure says what the configuration builds (preface, chapter 6)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from bgnet_lite.methods.bgnet.config import BGNetConfig  # noqa: E402
from bgnet_lite.viz_architecture import draw_bgnet  # noqa: E402


def texts(config):
    figure = draw_bgnet(config)
    found = " | ".join(text.get_text() for axis in figure.axes for text in axis.texts)
    plt.close(figure)
    return found


def test_text_follows_the_configuration():
    s5 = texts(BGNetConfig(variant="S5", depth_32=3, theta=0.35, decoder_channels=(8, 9, 10, 11)))
    assert "attention × 3" in s5 and "attention × 1" in s5  # depth_32 and depth_8
    assert s5.count("θ = 0.35") == 2  # matched at 1/8 and 1/32
    assert "8 ch\n9 ch\n10 ch\n11 ch" in s5
    assert s5.count("direct subtraction") == 3  # 1/2, 1/4, 1/16
    s2 = texts(BGNetConfig(variant="S2"))
    assert "attention" not in s2 and "θ" not in s2 and s2.count("direct subtraction") == 5
    s4 = texts(BGNetConfig(variant="S4"))
    assert "attention" not in s4 and s4.count("matched subtraction") == 2
    s1 = texts(BGNetConfig(variant="S1", num_classes=7))
    assert "T ⊕ S" in s1 and "Siamese" not in s1 and "7 classes" in s1
