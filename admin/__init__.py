"""The admin HTTP API and web console for tenants' administrators and provider operators."""
