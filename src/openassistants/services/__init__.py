"""The domain: rules, state changes and transactions. Imports nothing from fastapi."""
