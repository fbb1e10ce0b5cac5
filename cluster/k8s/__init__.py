"""Kubernetes: the Helm chart's tools (a helm binary), rendering and deploying the chart."""
