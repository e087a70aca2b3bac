"""Beyond the paper: classical registration + differencing, no learning (chapter 9).

Importing this package registers its methods.
"""
