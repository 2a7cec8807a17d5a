"""The metatomic boundary shared by PET, ECSE and the symmetry tools: a list of
``System`` flattened into one edge layout (:mod:`.batch`), systems rotated and
outputs rotated back (:mod:`.transform`), and the capabilities of a wrapper around
an exported model (:mod:`.capabilities`). The maths lives in
:mod:`metatrain_pet.geometry`."""
