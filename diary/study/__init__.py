"""The study: its row and protocol versions (``trial``), the randomization list, and the blinding
guard that decides what each reader may see of the allocation (``blinding``, ``blinding_index``).

May import: the core modules, ``protocol``, ``governance``."""
