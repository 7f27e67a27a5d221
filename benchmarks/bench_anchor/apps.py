from django.apps import AppConfig


class BenchAnchorConfig(AppConfig):
    name = "benchmarks.bench_anchor"
    label = "bench_anchor"
    default_auto_field = "django.db.models.BigAutoField"
