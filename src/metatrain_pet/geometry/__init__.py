"""Geometry shared by PET, ECSE and the symmetry tools, in pure torch (no metatensor,
no metatomic): the smooth switching functions of App. F.1 (:mod:`.switching`), edge
vectors and per-centre bookkeeping (:mod:`.edges`), segment sums and offsets
(:mod:`.segments`), rotations: the one random source and the one rotation back to
the laboratory frame of Cartesian values of any rank (:mod:`.rotations`)."""
