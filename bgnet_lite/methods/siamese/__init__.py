"""Background-generalization methods of Table 2: Siamese encoders comparing template and
sample (chapter 9).

Importing this package registers its methods.
"""
