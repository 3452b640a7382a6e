//! EMQX acl.conf: parser and rule matching.
