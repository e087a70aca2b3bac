"""The paper's reported numbers, in one place, always shown labelled as the paper's (chapters 6-7).

Source: Chen, Niu, Zhang, Zhang, Lin, Li, "Feature Matching Driven Background Generalization Neural
Networks for Surface Defect Segmentation", Knowledge-Based Systems (2024), Tables 1-3 (Section 4).
They were measured on the authors' private OCDs and PCBs datasets; nothing in this project
reproduces those datasets, so they are reference points, not targets our substitutes can match.
"""

from __future__ import annotations

CITATION = ("Chen et al., Feature Matching Driven Background Generalization Neural Networks for "
            "Surface Defect Segmentation, Knowledge-Based Systems 2024")

# Table 1: ablation on the OCDs dataset (mIoU, F2).
PAPER_TABLE1 = {
    "S1": {"miou": 0.7637, "f2": 0.8683},
    "S2": {"miou": 0.7887, "f2": 0.8850},
    "S3": {"miou": 0.8071, "f2": 0.8948},
    "S4": {"miou": 0.7885, "f2": 0.9048},
    "S5": {"miou": 0.8210, "f2": 0.9101},
}

# Table 2: 15 methods on the OCDs dataset (precision, recall, F2, mIoU).
PAPER_TABLE2 = {
    "U-Net": (0.8597, 0.6926, 0.7177, 0.6325),
    "FCN": (0.8831, 0.7376, 0.7627, 0.6580),
    "SegNet": (0.8949, 0.3907, 0.4403, 0.3662),
    "DeepLabV3+": (0.8295, 0.7967, 0.8031, 0.6702),
    "PGANet": (0.9186, 0.4793, 0.5300, 0.4483),
    "CCNet": (0.8224, 0.3875, 0.4333, 0.3614),
    "DUNet": (0.8716, 0.3100, 0.3559, 0.2942),
    "DANet": (0.8220, 0.5748, 0.6116, 0.5130),
    "Swin U-Net": (0.6612, 0.2569, 0.2927, 0.2076),
    "TGRNet": (0.2446, 0.4770, 0.4008, 0.1638),
    "PFENet": (0.1929, 0.2713, 0.2509, 0.1233),
    "Siamese U-Net": (0.8913, 0.6946, 0.7267, 0.6243),
    "DSSSNet": (0.8931, 0.8148, 0.8293, 0.7405),
    "GWNet": (0.9070, 0.8891, 0.8926, 0.8074),
    "BGNet": (0.8961, 0.9137, 0.9101, 0.8210),
}
PAPER_TABLE2_COLUMNS = ("precision", "recall", "f2", "miou")

# Table 3: 15 methods on the PCBs dataset (mIoU, mACC, parameters in MB).
PAPER_TABLE3 = {
    "U-Net": (0.5981, 0.9046, 7.86),
    "FCN": (0.4985, 0.8203, 15.32),
    "SegNet": (0.7864, 0.9974, 40.47),
    "DeepLabV3+": (0.7094, 0.9351, 32.98),
    "PGANet": (0.7894, 0.9975, 51.41),
    "CCNet": (0.4786, 0.9087, 67.70),
    "DUNet": (0.7513, 0.9126, 31.48),
    "DANet": (0.7243, 0.9003, 49.63),
    "Swin U-Net": (0.7719, 0.9972, 27.16),  # spelt "Swin-U-Net" in the paper's Table 3
    "TGRNet": (0.7068, 0.8988, 32.12),
    "PFENet": (0.7214, 0.9105, 30.25),
    "Siamese U-Net": (0.7837, 0.9954, 7.85),
    "DSSSNet": (0.7634, 0.9678, 33.60),
    "GWNet": (0.8243, 0.9978, 26.54),
    "BGNet": (0.8393, 0.9996, 47.70),
}
PAPER_TABLE3_COLUMNS = ("miou", "macc", "params_mb")

PAPER_PARAMS_MB = PAPER_TABLE3["BGNet"][2]
