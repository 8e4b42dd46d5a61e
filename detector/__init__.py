"""The detector service: routes each transaction to the legit, fraud or dead-letter topic."""
