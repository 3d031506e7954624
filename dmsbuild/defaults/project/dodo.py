"""This project's doit tasks: dmsbuild's (doit's way to share tasks). `doit list` shows them.

While nothing they read changes, their output comes from artifacts/.doit-tasks/
(DMSBUILD_TASK_CACHE=off bypasses it; deleting that folder clears it).
"""
from dmsbuild.taskcache import TaskCache

_tasks = TaskCache.open(__file__)  # dmsbuild's generators, or their output cached while nothing they read changed
DOIT_CONFIG = _tasks.doit_config()  # dependency database in artifacts/, `doit` alone builds

task_export = _tasks.creator("export")
task_quantize = _tasks.creator("quantize")
task_evaluate = _tasks.creator("evaluate")
task_build = _tasks.creator("build")
task_deploy = _tasks.creator("deploy")
task_rollback = _tasks.creator("rollback")
task_bench = _tasks.creator("bench")
task_report = _tasks.creator("report")
task_results_export = _tasks.creator("results_export")
task_doctor = _tasks.creator("doctor")
task_init = _tasks.creator("init")
task_tune = _tasks.creator("tune")
task_bundle = _tasks.creator("bundle")
task_ota_pull = _tasks.creator("ota_pull")
