"""Files residents attach to submissions: checked by their bytes, stripped of hidden
metadata, and kept encrypted and content-addressed behind one storage interface."""
