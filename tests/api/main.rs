//! HTTP integration tests: the real server on 127.0.0.1:0 with a temporary embedded store.
