"""This project's doit tasks: dmsbuild's, imported (doit's way to share tasks). `doit list` shows them."""
from dmsbuild.tasks import doit_config
from dmsbuild.tasks.build import task_build, task_evaluate, task_export, task_quantize  # noqa: F401
from dmsbuild.tasks.deploy import task_deploy, task_rollback  # noqa: F401
from dmsbuild.tasks.bench import task_bench  # noqa: F401
from dmsbuild.tasks.report import task_report, task_results_export  # noqa: F401
from dmsbuild.tasks.doctor import task_doctor  # noqa: F401
from dmsbuild.tasks.init import task_init  # noqa: F401
from dmsbuild.tasks.tune import task_tune  # noqa: F401
from dmsbuild.tasks.bundle import task_bundle, task_ota_pull  # noqa: F401

DOIT_CONFIG = doit_config()  # dependency database in artifacts/, `doit` alone builds
