"""Human validation in Label Studio (issue 5). Not built yet."""
