"""The "classical" methods of Table 2: template and sample concatenated into one network
(6 channels for RGB; chapter 9).

Importing this package registers its methods.
"""
