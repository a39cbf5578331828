"""tcp-info's own checkov policies, loaded by scripts/check-deploy.sh (--external-checks-dir)."""
