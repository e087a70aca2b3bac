"""Foreground-generalization (few-shot) methods of Table 2 behind the pair contract (chapter 9).

Importing this package registers its methods.
"""
