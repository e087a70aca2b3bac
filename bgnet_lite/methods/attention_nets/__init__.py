"""Attention-based methods of Table 2, fed the concatenated pair (chapter 9).

Importing this package registers its methods.
"""
