"""The generator service: random transactions onto TRANSACTIONS_TOPIC at a steady rate."""
