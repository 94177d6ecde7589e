//! Tests of unpacking and packing layers.
