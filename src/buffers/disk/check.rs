//! `weir buffer check DATA_DIR`: placeholder replaced below.
