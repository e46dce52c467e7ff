"""The domain that the gateway and the workers share: tables, job states, the store, the queue."""
