"""The staff console and the customer portal shell: templates, static assets, problem mapping."""
