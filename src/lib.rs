//! `baton-e2e` has no code of its own: the package only hosts Baton's end-to-end tests
//! (`tests/*.rs`), which build and run the real `baton-controller`, `baton-worker` and `baton`
//! binaries over loopback gRPC.
