"""The MongoDB adapter: the `jobs` collection (the durable record) and the cluster's collections."""
