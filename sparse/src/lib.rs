//! tilejit-sparse: the home of the SPARAMX-style sparse path (bitmap
//! format, pruning, sparse AMX and AVX-512 generators). Nothing is built
//! here yet; the crate exists because the workspace layout is fixed
//! (DESIGN.md), and it exports no API until the sparse path lands.
