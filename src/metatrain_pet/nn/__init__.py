"""Pure-torch building blocks of PET: no metatensor or metatomic types in here."""
