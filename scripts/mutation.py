#!/usr/bin/env python3
"""Mutation testing of the lines that carry dmsbuild's promises: every mutation must be killed.

Each mutation is located by a code snippet that must occur exactly once in its file (never by a
line number: the files change under parallel development), replaced by a broken variant, and the
tests named for it are run against a temporary copy of the repository (the working tree is never
edited). A mutation the tests do not notice *survived*: the promise is not really tested.

    .venv/bin/python scripts/mutation.py                 # all, one at a time
    .venv/bin/python scripts/mutation.py -j 2            # two copies of the repo, two at a time
    .venv/bin/python scripts/mutation.py rollback-sha256 path-guard-dotdot   # a subset by name
    .venv/bin/python scripts/mutation.py --list          # names, files and tests
    .venv/bin/python scripts/mutation.py --markdown      # the table as Markdown (docs/testing.md)

Exit status: 0 every mutation killed; 1 one survived (or its tests errored, ran nothing, timed
out); 2 a snippet was not found (or not unique) or a mutation does not compile: the list needs
updating after a change to the code. Before mutating, the selected tests are run once unmutated
(``--no-baseline`` skips it): a test failing on the real code would make every mutation look killed.

A small driver of our own rather than mutmut or cosmic-ray: those mutate every operator of whole
modules (thousands of mutants, hours on 2 cores) and pick the tests by coverage; here each
mutation is the one line a promise rests on, with the tests that are meant to defend it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: one mutation's tests may take this long before it counts as a hang (reported, not killed)
TIMEOUT_S = int(os.environ.get("MUTATION_TIMEOUT_S", "600"))


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    find: str  # must occur exactly once in ``file``
    replace: str
    tests: tuple[str, ...]  # pytest node ids / files run against the mutant
    promise: str  # what breaks when the line does


A = "dmsbuild/board/release_agent.py"
MB, MT = "dmsbuild/board/mender/dmsbuild_release.py", "tests/test_mender.py"
TC, TCT = "dmsbuild/taskcache.py", "tests/test_taskcache.py"
STATS_TESTS = ("tests/test_invariants.py::test_latency_stats_match_numpy",)
GUARD_TESTS = ("tests/test_invariants.py::test_agent_refuses_paths_that_leave_the_deploy_root",
               "tests/test_invariants.py::test_a_manifest_entry_with_dotdot_is_never_staged")
M = [
    # ---------------------------------------------------------------- sha256 on upload, verify, rollback
    Mutation("upload-sha256", A, "            if got != sha:\n", "            if False:\n",
             ("tests/faults/test_board_faults.py::test_corrupted_objects_detected_and_repaired",),
             "a corrupt upload (.part) is never promoted to an object"),
    Mutation("verify-object-sha256", A, 'elif os.path.getsize(obj) != f["size"] or sha256_of(obj) != sha:',
             'elif os.path.getsize(obj) != f["size"]:',
             ("tests/test_deploy.py::test_tampered_object_is_caught_and_repaired",),
             "a same-size tampered object is re-hashed and re-sent"),
    Mutation("verify-seal-objects", A, 'return seal.get("release_id") == rid and seal.get("objects") == seal_of(root, files)',
             'return seal.get("release_id") == rid',
             ("tests/test_deploy.py::test_tampered_object_is_caught_and_repaired",),
             "a redeploy skips re-hashing only when no object changed since it was verified"),
    Mutation("rollback-sha256", A, 'if not regular(root, "releases/%s/%s" % (prev, rel)) or sha256_of(p) != f["sha256"]:',
             'if not regular(root, "releases/%s/%s" % (prev, rel)):',
             ("tests/test_invariants.py::test_rollback_refuses_a_previous_release_whose_file_no_longer_matches",),
             "rollback checks the previous release's files against its manifest"),
    Mutation("manifest-sha256-vs-build-json", "dmsbuild/ship/manifest.py", "if sha is not None and sha != digest:",
             "if False:", ("tests/test_manifest.py",),
             "a release is never made from artifacts that differ from build.json"),
    # ---------------------------------------------------------------- the atomic switch and history
    Mutation("switch-not-atomic", A, '    fault_point("commit.switch")\n    os.replace(tmp, link)\n',
             '    if os.path.lexists(link):\n        os.unlink(link)\n    fault_point("commit.switch")\n'
             '    os.replace(tmp, link)\n',
             ("tests/faults/test_kill.py::test_kill_at_every_phase",),
             "current always points to a complete release (one rename, never unlink + create)"),
    Mutation("switch-before-sync-verify", A, "    resend, problems = verify_objects(root, files)\n    if resend:\n",
             "    resend, problems = verify_objects(root, files)\n    if False:\n",
             ("tests/test_deploy.py::test_tampered_object_is_caught_and_repaired",),
             "a release with a missing/bad object is never switched to"),
    Mutation("history-unreadable-is-empty", A, "    except (OSError, ValueError) as exc:\n        hist = exc\n",
             "    except (OSError, ValueError) as exc:\n        return []\n",
             ("tests/test_invariants.py::test_an_unreadable_history_is_corruption_not_an_empty_history",),
             "an unreadable history.json is detected corruption, not an empty history"),
    # ---------------------------------------------------------------- the lock
    Mutation("lock-flock", A, "        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n", "        pass\n",
             ("tests/test_deploy.py::test_concurrent_deploy_blocked_naming_holder",),
             "one deploy at a time per board"),
    Mutation("lock-held-ignored", A, "    held = try_lock(fd)\n    if held is not None:\n",
             "    held = try_lock(fd)\n    if False:\n",
             ("tests/test_deploy.py::test_concurrent_deploy_blocked_naming_holder",),
             "a second deploy is refused naming the holder"),
    # ---------------------------------------------------------------- host keys
    Mutation("host-key-unknown-accepted", "dmsbuild/transport/ssh.py",
             '            raise paramiko.SSHException(f"unknown host key {fingerprint(key)}")\n',
             "            return\n",
             ("tests/test_deploy.py::test_unknown_host_key_refused_unless_trust_on_first_use",),
             "an unknown host key is refused unless trust_on_first_use"),
    Mutation("host-key-pin-ignored", "dmsbuild/transport/ssh.py",
             "            keys.add(name, ktype, paramiko.PKey.from_type_string(ktype, base64.b64decode(data)))\n",
             "            pass\n",
             ("tests/faults/test_network.py", "tests/test_deploy.py::test_host_key_mismatch_refused_with_fingerprint_and_file"),
             "a pinned host_key is what the board is checked against"),
    Mutation("host-key-tofu-not-recorded", "dmsbuild/transport/ssh.py",
             '            fh.write(f"{name} {key.get_name()} {key.get_base64()}\\n")\n', "            pass\n",
             ("tests/test_deploy.py::test_unknown_host_key_refused_unless_trust_on_first_use",),
             "trust on first use records the key (a later change is then a mismatch)"),
    Mutation("known-hosts-stale", "dmsbuild/transport/ssh.py",
             "        if hit is not None and hit[0] == stamp:\n", "        if hit is not None:\n",
             ("tests/test_ssh_known_hosts.py::test_a_changed_known_hosts_is_read_again",),
             "known_hosts is parsed once per version of the file: a changed file is read again"),
    Mutation("ssh-algorithms-not-disabled", "dmsbuild/transport/ssh.py",
             "                disabled_algorithms=disabled, transport_factory=transport,\n",
             "                transport_factory=transport,\n",
             ("tests/test_ssh_algorithms.py::test_board_and_config_sharing_no_cipher_fail_like_ssh",),
             "paramiko offers only the algorithms the ssh config (ssh -G) allows"),
    Mutation("ssh-algorithms-paramiko-order", "dmsbuild/transport/ssh.py",
             "                setattr(opts, field_, names)\n", "                pass\n",
             ("tests/test_ssh_algorithms.py::test_the_users_order_of_preference_is_kept",),
             "the ssh config's order of preference, not paramiko's, picks the algorithm"),
    Mutation("ssh-algorithms-no-precheck", "dmsbuild/transport/ssh.py",
             "            algorithms(hop)  # a list paramiko cannot follow fails here, before any hop is connected\n",
             "            pass\n",
             ("tests/test_ssh_algorithms.py::test_an_algorithm_paramiko_lacks_fails_before_connecting",),
             "a list paramiko cannot follow fails before anything is sent to the board"),
    Mutation("upload-slots-off", "dmsbuild/transport/ssh.py",
             "        with upload_slot():\n            self._put(local, remote, offset=offset, progress=progress)\n",
             "        self._put(local, remote, offset=offset, progress=progress)\n",
             ("tests/test_ssh_known_hosts.py::test_uploads_at_once_are_capped_per_process",),
             "at most DMSBUILD_UPLOAD_SLOTS uploads at once per controller process"),
    Mutation("upload-slot-not-held-while-sending", "dmsbuild/transport/ssh.py",
             "        gate = slot if slot is not None and total - offset >= SMALL_UPLOAD else contextlib.nullcontext()\n",
             "        gate = contextlib.nullcontext()\n",
             ("tests/test_upload_path.py::test_the_slot_is_held_while_bytes_flow_and_small_files_take_none",),
             "a deploy's uploads pump bytes at most DMSBUILD_UPLOAD_SLOTS (or the adaptive limit) at once"),
    Mutation("upload-limit-buys-throughput-with-gil", "dmsbuild/transport/ssh.py",
             "        gained = rate >= last[0] * 1.05 and per_byte < last[1] * 1.15\n",
             "        gained = rate >= last[0] * 1.05\n",
             ("tests/test_upload_slots.py::test_a_gain_bought_with_much_more_cpu_per_byte_is_not_taken",),
             "the adaptive upload limit does not climb on throughput bought with much more CPU per byte"),
    Mutation("upload-refused-write-unnoticed", "dmsbuild/transport/ssh.py",
             "                        _await_writes(sftp, dst)\n", "",
             ("tests/test_upload_path.py::test_a_refused_write_is_an_error",),
             "a write the board refused fails the upload (no stat afterwards any more)"),
    Mutation("stream-slot-not-held", "dmsbuild/transport/ssh.py",
             "        return upload_slot() if nbytes >= SMALL_UPLOAD else contextlib.nullcontext()\n",
             "        return contextlib.nullcontext()\n",
             ("tests/test_agent_receive.py::test_streams_to_the_agent_hold_the_upload_slot_while_bytes_flow",),
             "objects streamed to the board agent pump bytes at most the upload limit at once, like SFTP uploads"),
    Mutation("received-hash-trusted-after-a-change", A, "            if _identity(os.lstat(part)) == rec[0]:\n",
             "            if True:\n",
             ("tests/test_agent_receive.py::test_an_upload_changed_after_it_arrived_is_hashed_again_and_refused",),
             "the hash taken while an upload arrived stands only while the part is unchanged since"),
    Mutation("resume-prefix-not-hashed", A, "                h.update(b)\n                done += len(b)\n",
             "                done += len(b)\n",
             ("tests/test_agent_receive.py::test_a_resume_hashes_what_was_there_and_a_garbage_prefix_is_refused",),
             "a resumed upload's hash covers the bytes that were already there"),
    Mutation("upload-one-packet-writes", "dmsbuild/transport/ssh.py",
             "    return max(one, packets * packet - WRITE_HEADROOM) if packets > 1 else one\n", "    return one\n",
             ("tests/test_upload_path.py::test_upload_arrives_whole_in_large_writes",),
             "writes as large as the board's sftp-server takes (fewer answers per MB)"),
    # ---------------------------------------------------------------- the agent's path guard
    Mutation("path-guard-off", A, '    if rel.startswith("/") or ".." in rel.split("/") or "\\0" in rel:\n',
             '    if "\\0" in rel:\n', GUARD_TESTS,
             "the board agent never touches a path outside the deploy root"),
    Mutation("path-guard-dotdot", A, '    if rel.startswith("/") or ".." in rel.split("/") or "\\0" in rel:\n',
             '    if rel.startswith("/") or "\\0" in rel:\n', GUARD_TESTS,
             "'..' never climbs out of the deploy root"),
    # ---------------------------------------------------------------- accuracy gates and thresholds
    # one judge (dmsbuild/board/runner/judge.py, re-exported by core/accuracy.py) for the build-time gate, the board's output check and a Mender install
    Mutation("accuracy-top1-slack", "dmsbuild/board/runner/judge.py",
             "    if agreement is not None and 1.0 - agreement > limit.value + 1e-9:\n",
             "    if agreement is not None and 1.0 - agreement > limit.value + 0.04:\n", ("tests/test_gate_boundaries.py",),
             "the accuracy gate (build and board) fails at the top-1 limit, not 4 points later"),
    Mutation("accuracy-first-head-only", "dmsbuild/board/runner/judge.py",
             "    return [line for head, m in heads.items() for line in head_failures(head, m, floors.for_head(head), samples)]\n",
             "    return [line for head, m in list(heads.items())[:1] for line in head_failures(head, m, floors.for_head(head), samples)]\n",
             ("tests/test_gate_boundaries.py",), "the gate judges every head, not only the first"),
    Mutation("accuracy-target-floor-ignored", "dmsbuild/core/accuracy.py",
             '        (profile.gates, f"{prof_src}: gates."),\n', "", ("tests/test_gate_boundaries.py",),
             "a target's own [gates] floors win over the project's [accuracy]"),
    Mutation("accuracy-degenerate-ignored", "dmsbuild/board/runner/judge.py", '    if m.get("degenerate"):\n', "    if False:\n",
             ("tests/test_accuracy_metrics.py",), "constant, all-zero, NaN or Inf outputs fail whatever the other metrics say"),
    Mutation("accuracy-cosine-floor-off", "dmsbuild/board/runner/judge.py", "    if cosine is None or cosine < floor.value:\n",
             "    if cosine is None:\n", ("tests/test_accuracy_metrics.py",), "the per-sample cosine floor fails an artifact"),
    Mutation("accuracy-sqnr-floor-off", "dmsbuild/board/runner/judge.py",
             "    if sqnr is not None and sqnr < floor.value:  # None: identical", "    if False:  # None: identical", ("tests/test_accuracy_metrics.py",), "the SQNR floor fails an artifact"),
    Mutation("build-accuracy-gate-off", "dmsbuild/convert/evaluate.py", "    if lines:\n        raise UserError(", "    if False:\n        raise UserError(",
             ("tests/test_gate_boundaries.py",), "a build fails when an artifact misses an accuracy floor"),
    # ---------------------------------------------------------------- outputs judged by kind (docs/accuracy.md "Outputs by kind")
    Mutation("kind-collapsed-slice-passes", "dmsbuild/board/runner/judge.py", '        if s.get("collapsed"):\n',
             "        if False:\n", ("tests/test_output_kinds.py",),
             "a collapsed slice (every class score 0 or constant) fails whatever the floors, naming output and slice"),
    Mutation("kind-two-level-slice-not-collapsed", "dmsbuild/board/runner/metrics.py",
             "    if len(levels) <= COLLAPSED_LEVELS and", "    if False and", ("tests/test_output_kinds.py",),
             "class scores rounded to two levels by a scale set by the boxes are a collapsed slice"),
    Mutation("kind-class-axis-flattened", "dmsbuild/board/runner/metrics.py",
             '        by["agreement"] = class_agreement(r, g, axis)\n',
             '        by["agreement"] = top1_agreement(as_samples(r), as_samples(g))\n', ("tests/test_output_kinds.py",),
             "classification and sequence heads are judged along their class axis, per position, not flattened"),
    Mutation("kind-floors-off", "dmsbuild/board/runner/judge.py",
             "        if value is not None and value < floor.value - 1e-12:\n", "        if False:\n", ("tests/test_output_kinds.py",),
             "mask IoU, decoded-string agreement, recall and precision floors fail an artifact"),
    Mutation("kind-not-shipped-to-board", "dmsbuild/board/runner/dms_bench.py",
             '                                          outputs.get("kinds"))\n', "                                          None)\n",
             ("tests/test_output_kinds.py",), "the board's runner judges each output by the kind its release's manifest carries"),
    Mutation("kind-change-not-reevaluated", "dmsbuild/tasks/build.py",
             '               "uptodate": [config_changed(json.dumps(as_dict(proj.outputs), sort_keys=True))]}\n',
             "               }\n", ("tests/test_output_kinds.py",), "declaring a kind re-judges artifacts already evaluated"),
    # ---------------------------------------------------------------- latency gate
    Mutation("latency-gate-slack", "dmsbuild/measure/gates.py", "        if ratio > max_ratio:\n",
             "        if ratio > max_ratio * 1.1:\n", ("tests/test_gate_boundaries.py", "tests/test_gates.py"),
             "a release slower than the allowed ratio fails the gate"),
    Mutation("latency-baseline-same-release", "dmsbuild/core/results.py", " AND release_id != ? AND error IS NULL",
             " AND (release_id != ? OR 1) AND error IS NULL", ("tests/test_gates.py",),
             "the baseline is the previous release, never a rerun of the same one"),
    Mutation("health-gate-latency-slack", "dmsbuild/ship/fleet.py",
             "and outcome.latency_ms > outcome.previous_latency_ms * max_latency_regression",
             "and outcome.latency_ms > outcome.previous_latency_ms * (max_latency_regression + 0.1)",
             ("tests/test_gate_boundaries.py", "tests/test_fleet.py"), "the rollout health gate's latency limit"),
    Mutation("health-gate-unverified-ok", "dmsbuild/ship/fleet.py", "        if not outcome.verified:\n",
             "        if False:\n", ("tests/test_fleet.py",), "an unverified release is unhealthy"),
    # ---------------------------------------------------------------- one verdict: consumers read it, never re-judge
    Mutation("deploy-gate-ignores-verdict", "dmsbuild/pipeline/deploy.py",
             "        return fleet.GateResult(True) if verdict.ok else fleet.GateResult(False, verdict.reason)\n",
             "        return fleet.GateResult(True)\n", ("tests/test_verdict.py", "tests/test_fleet_deploy.py"),
             "the deploy's health gate fails a board whose measured verdict failed"),
    Mutation("deploy-gate-unverified-ok", "dmsbuild/pipeline/deploy.py", "        if not outcome.verified:\n",
             "        if False:\n", ("tests/test_fleet_deploy.py",), "an unverified release fails the deploy's gate"),
    Mutation("standard-gate-re-judges-figures", "dmsbuild/ship/fleet.py",
             "        if outcome.bench_verdict is not None:  # judged once, by measure: read, never re-judged\n",
             "        if False:\n", ("tests/test_verdict.py",),
             "the rollout reads measure's verdict instead of judging its figures again"),
    Mutation("ctrl-c-keeps-starting-boards", "dmsbuild/ship/fleet.py",
             "while pending and not halted and not ctrl_c.is_set() and len(running) < parallel:",
             "while pending and not halted and len(running) < parallel:",
             ("tests/test_fleet_interrupt.py",), "after Ctrl-C no new board starts, even when it lands in a finalizer"),
    Mutation("ctrl-c-never-raised", "dmsbuild/ship/fleet.py",
             "            if ctrl_c.is_set():  # no board started after it; the ones in flight have finished\n"
             "                raise KeyboardInterrupt\n",
             "            if False:\n                raise KeyboardInterrupt\n",
             ("tests/test_fleet_interrupt.py",), "an interrupted rollout ends in KeyboardInterrupt"),
    # ---------------------------------------------------------------- percentiles and warm-up
    Mutation("percentile-rank", "dmsbuild/board/runner/dms_bench.py", "    rank = (len(sorted_values) - 1) * q / 100.0\n",
             "    rank = len(sorted_values) * q / 100.0 - 1\n", STATS_TESTS,
             "percentiles interpolate like numpy"),
    Mutation("median-is-mean", "dmsbuild/board/runner/dms_bench.py", '        "median": percentile(s, 50),\n',
             '        "median": statistics.fmean(s),\n', STATS_TESTS,
             "the median is the median"),
    Mutation("std-sample-not-population", "dmsbuild/board/runner/dms_bench.py",
             '"std": statistics.pstdev(s) if len(s) > 1 else 0.0', '"std": statistics.stdev(s) if len(s) > 1 else 0.0',
             STATS_TESTS, "std is the population std the docs state"),
    Mutation("warmup-skipped", "dmsbuild/board/runner/dms_bench.py", '    for _ in range(plan["warmup"]):\n',
             "    for _ in range(0):\n", ("tests/test_invariants.py::test_runner_runs_the_warmup_before_the_timed_loop",),
             "the warm-up runs before the timed loop"),
    # ---------------------------------------------------------------- the task list cache (dmsbuild/taskcache.py)
    Mutation("taskcache-listing-not-keyed", TC, "            self.note(path)\n            self.listed.add(os.path.abspath(os.fsdecode(path)))",
             "            pass", (f"{TCT}::test_a_change_to_what_the_generators_read_gives_the_uncached_list[calibration sample added]",),
             "a sample added to a data folder misses the cached task list"),
    Mutation("taskcache-listed-folder-by-identity", TC, "stat.S_ISDIR(v[5]) and k[0] not in self.listed else v)",
             "stat.S_ISDIR(v[5]) else v)",
             (f"{TCT}::test_a_change_to_what_the_generators_read_gives_the_uncached_list[calibration sample added]",),
             "a listed folder is keyed on its full stat (its mtime changes with its entries)"),
    Mutation("taskcache-environment-not-keyed", TC, "        os.environ.__class__ = _recording_environ(self._environ_class, self)",
             "        pass", (f"{TCT}::test_an_environment_variable_the_generators_read",),
             "an environment variable a generator reads is in the key"),
    Mutation("taskcache-missing-paths-not-keyed", TC, "        try:\n            self.paths[key] = _stat(p, follow)",
             "        try:\n            if _stat(p, follow) is not None: self.paths[key] = _stat(p, follow)",
             (f"{TCT}::test_a_change_to_what_the_generators_read_gives_the_uncached_list[factory module shadowed]",),
             "a file that appears where a generator looked (a module shadowing the factory's) misses the cached list"),
    Mutation("taskcache-symlink-targets-not-keyed", TC, "                        if entry.is_symlink():", "                        if False:",
             (f"{TCT}::test_a_symlinked_sample_whose_target_goes",), "a symlinked sample's target is keyed"),
    Mutation("taskcache-no-racy-window", TC, "            if st is not None and st[0] != -1 and max(st[0], st[1]) >= racy_after:",
             "            if False:", (f"{TCT}::test_a_path_changed_just_before_is_not_cached",),
             "a path changed within RACY_S of the write keeps the cache unwritten"),
    Mutation("taskcache-stand-in-does-not-compare", TC,
             '            if json.loads(json.dumps([encode_task(t) for t in tasks])) != self.entry["generators"][name]["tasks"]:',
             "            if False:", (f"{TCT}::test_a_cached_list_that_differs_from_a_fresh_one_runs_nothing",),
             "a cached action runs only after a fresh generation agrees with the cached list"),
    Mutation("taskcache-doit-options-not-compared", TC, '        if not self._live and _plain(given) != gen["given"]:',
             "        if False:", (f"{TCT}::test_doit_option_defaults_from_pyproject_are_not_served_stale",),
             "doit's option defaults from pyproject.toml are not served stale"),
    # ---------------------------------------------------------------- incremental builds
    Mutation("file-dep-calibration", "dmsbuild/tasks/build.py", '"file_dep": [str(p.fp32), *map(str, calibration)],',
             '"file_dep": [str(p.fp32)],',
             ("tests/test_incremental.py::test_calibration_change_rebuilds_only_static_quantization",),
             "a changed calibration image rebuilds static quantization"),
    Mutation("file-dep-export", "dmsbuild/tasks/build.py",
             '        "file_dep": [str(d) for d in deps],\n        "targets": [str(p.fp32), str(p.fp32_info)],\n',
             '        "file_dep": [],\n        "targets": [str(p.fp32), str(p.fp32_info)],\n',
             ("tests/test_incremental.py::test_checkpoint_change_rebuilds_export_and_downstream",),
             "a changed checkpoint re-exports"),
    Mutation("config-changed-build", "dmsbuild/tasks/build.py",
             '           "file_dep": sorted(deps), "targets": targets, "clean": True,\n'
             '           "uptodate": [config_changed(json.dumps(settings, sort_keys=True, default=str))]}\n',
             '           "file_dep": sorted(deps), "targets": targets, "clean": True}\n',
             ("tests/test_incremental.py::test_one_profile_setting_rebuilds_only_that_target",),
             "a changed profile setting (the gate limit too) rebuilds that target"),
    Mutation("config-changed-static-quant", "dmsbuild/tasks/build.py",
             '               "targets": [str(p.qdq(key))], "clean": True,\n'
             '               "uptodate": [config_changed(json.dumps(settings, sort_keys=True))]}\n',
             '               "targets": [str(p.qdq(key))], "clean": True}\n',
             ("tests/test_incremental.py::test_preprocess_change_requantizes_static_int8",),
             "a changed setting the variant's name does not show (preprocessing) re-quantizes"),
    # ---------------------------------------------------------------- HTML escaping
    Mutation("html-cell-unescaped", "dmsbuild/measure/report.py",
             "if isinstance(c, Abbr) else e(text))", "if isinstance(c, Abbr) else text)",
             ("tests/test_report.py",), "board strings are escaped in the HTML report"),
    Mutation("markdown-cell-unescaped", "dmsbuild/untrusted.py",
             '    return html.escape(_MD_SPECIAL.sub(r"\\\\\\1", s), quote=False)\n', '    return _MD_SPECIAL.sub(r"\\\\\\1", s)\n',
             ("tests/test_report.py",), "board strings are escaped in report.md"),
    Mutation("markdown-links-live", "dmsbuild/untrusted.py",
             '    return html.escape(_MD_SPECIAL.sub(r"\\\\\\1", s), quote=False)\n', '    return html.escape(s, quote=False)\n',
             ("tests/test_security_results.py::test_report_md_neutralises_links_and_images_from_board_text",),
             "report.md shows links and images from board text as text"),
    Mutation("board-text-escapes-kept", "dmsbuild/untrusted.py", "    out = _CONTROL.sub(sub, s)\n", "    out = s\n",
             ("tests/test_security_results.py::test_errors_and_progress_lines_never_carry_escape_sequences",
              "tests/test_security_results.py::test_board_text_is_stored_with_its_escapes_shown"),
             "ANSI/OSC escapes from a board reach neither the terminal nor the store"),
    # ---------------------------------------------------------------- input errors name the file
    Mutation("toml-error-without-file", "dmsbuild/config.py", 'raise UserError(f"{path}: malformed TOML: {exc}"',
             'raise UserError(f"malformed TOML: {exc}"',
             ("tests/faults/test_hostile_input.py::test_fuzz_target_profiles",),
             "a malformed file's error names the file (the fuzzer checks every refusal)"),
    # ---------------------------------------------------------------- result validation
    Mutation("parse-document-unvalidated", "dmsbuild/core/results.py",
             "    return validate_document(load_json(text, board=board), board=board)\n",
             "    return load_json(text, board=board)\n",
             ("tests/faults/test_hostile_board.py::test_malformed_result_json_is_refused_cleanly",),
             "a board's results are validated before anything is stored"),
    Mutation("parse-document-empty", "dmsbuild/core/results.py",
             "    return validate_document(load_json(text, board=board), board=board)\n", "    return {}\n",
             ("tests/faults/test_hostile_board.py::test_malformed_result_json_is_refused_cleanly",),
             "malformed JSON is refused, not turned into an empty document"),
    Mutation("result-nonfinite-accepted", "dmsbuild/core/results.py",
             "isinstance(value, float) and not math.isfinite(value)) or not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:",
             "False):",
             ("tests/test_invariants.py::test_an_overflowing_or_nan_measurement_is_refused",),
             "no NaN/inf measurement is stored"),
    Mutation("result-float-unbounded", "dmsbuild/core/results.py",
             " or not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:", ":",
             ("tests/test_security_results.py::test_an_out_of_range_number_is_one_refused_result",),
             "a number beyond what the store and reports hold (10**4000, 1e300) is one refused result"),
    Mutation("result-int-unbounded", "dmsbuild/core/results.py", "or not lo <= value <= MAX_INT:", "or value < lo:",
             ("tests/test_security_results.py::test_an_out_of_range_number_is_one_refused_result",),
             "warmup = 10**4000 is refused by validation, not an OverflowError in the sqlite insert"),
    Mutation("result-name-prefix-match", "dmsbuild/core/results.py", "not pattern.fullmatch(value)",
             "not pattern.match(value)",
             ("tests/test_security_results.py::test_a_trailing_newline_is_not_a_name",),
             "a name is the whole string: 'fp32\\n' is not 'fp32'"),
    # ---------------------------------------------------------------- issue 30: the deploy root and engines
    Mutation("agent-follows-symlinked-folders", A,
             "        if not stat.S_ISDIR(st.st_mode):\n            return False\n    return True\n",
             "        pass\n    return True\n",
             ("tests/test_security_agent.py::test_a_rollback_never_follows_a_symlink_in_the_previous_release",),
             "no read, write or delete follows a symlinked folder out of the deploy root"),
    Mutation("agent-opens-symlinks", A, 'os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))',
             "os.open(path, os.O_RDONLY)",
             ("tests/test_security_agent.py::test_a_rollback_never_follows_a_symlink_in_the_previous_release",),
             "a symlinked manifest.json is never read"),
    Mutation("root-not-ours-accepted", A, "    made = [] if fresh else _ours_from_before(root)\n",
             "    made = []\n",
             ("tests/test_security_agent.py::test_a_folder_that_already_holds_files_is_refused_and_left_alone",),
             "a deploy root that holds someone else's files is refused"),
    Mutation("gc-removes-foreign-releases", A, "            if name not in made:  # not a release", "            if False:  # not a release",
             ("tests/test_security_agent.py::test_garbage_collection_removes_only_what_the_marker_says_we_made",),
             "garbage collection removes only the release folders dmsbuild made"),
    Mutation("gc-removes-foreign-objects", A, "        if not _is_sha(name):  # objects are named", "        if False:  # objects are named",
             ("tests/test_security_agent.py::test_garbage_collection_removes_only_what_the_marker_says_we_made",),
             "garbage collection removes only sha256-named objects"),
    Mutation("system-root-accepted", A, '    if real == "/" or real in SYSTEM_FOLDERS or above_home:', "    if False:",
             ("tests/test_security_agent.py::test_system_folders_and_the_home_folder_are_never_a_deploy_root",),
             "/, the home folder and system folders are never a deploy root"),
    Mutation("engine-cache-shared", "dmsbuild/backends/trt_board.py", "cache = trt.EngineCache(cache_root / board)",
             "cache = trt.EngineCache(cache_root)",
             ("tests/test_security_engines.py::test_a_planted_engine_never_reaches_another_board",),
             "each board's engines live in its own folder of the host cache"),
    Mutation("engine-of-another-board-installed", "dmsbuild/backends/trt_board.py",
             "if cached is not None and cache.built_by(key) != board:", "if False:",
             ("tests/test_security_engines.py::test_an_engine_copied_into_another_boards_folder_is_not_installed",),
             "an engine built by another board is never installed"),
    Mutation("engine-sha256-unchecked-on-board", "dmsbuild/backends/trt_board.py", "if got != [want]:", "if False:",
             ("tests/test_security_engines.py::test_a_board_gets_its_own_engine_back_checked_by_sha256",),
             "an engine from the host cache is installed only with the sha256 recorded at build"),
    Mutation("board-artifact-entries-unchecked", "dmsbuild/measure/bench.py",
             '    check_board_artifacts(manifest, board=transport.name, where=f"{release_dir}/manifest.json")\n',
             "    pass\n",
             ("tests/test_security_engines.py::test_the_boards_artifact_entries_cannot_name_host_files",),
             "artifact names, sha256s and paths from the board's manifest cannot name host files"),
    Mutation("host-cache-from-board", "dmsbuild/measure/bench.py",
             ' or not candidate.is_relative_to(artifacts):', ':',
             ("tests/test_security_engines.py::test_a_board_manifest_cannot_move_the_host_engine_cache",),
             "a board's manifest cannot move the host engine cache out of artifacts/"),
    Mutation("result-samples-count", "dmsbuild/core/results.py",
             'if result.get("iterations") and len(samples) != result["iterations"]:', "if False:",
             ("tests/test_results.py",), "samples_ms holds one sample per iteration"),
    Mutation("result-size-limit", "dmsbuild/core/results.py",
             "    size = len(text.encode(\"utf-8\", errors=\"replace\"))\n    if size > MAX_DOCUMENT_BYTES:\n",
             "    size = len(text.encode(\"utf-8\", errors=\"replace\"))\n    if False:\n",
             ("tests/test_results.py",), "an oversized document is refused unread"),
    Mutation("trtexec-no-summary", "dmsbuild/backends/tensorrt.py",
             '        res["error"] = "trtexec printed no performance summary"\n', "        pass\n",
             ("tests/test_invariants.py::test_trtexec_without_a_summary_is_an_error_result_never_numbers",
              "tests/faults/test_hostile_board.py::test_trtexec_printing_garbage"),
             "trtexec output without a summary is an error result, never an empty measurement"),
    Mutation("trtexec-no-summary-fuzz", "dmsbuild/backends/tensorrt.py",
             '        res["error"] = "trtexec printed no performance summary"\n', "        pass\n",
             ("tests/faults/test_hostile_board.py::test_trtexec_printing_garbage",),
             "the trtexec fuzzer alone fails when garbage is accepted"),
    Mutation("tune-choice-ci-and-gate", "dmsbuild/pipeline/tune/choice.py",
             'ok = [r for r in rows if r.measurement and r.measurement["ci_high"] < 1.0 and not r.gate_failures]',
             'ok = [r for r in rows if r.measurement]',
             ("tests/test_tune.py::test_choice_needs_a_whole_ci_below_one_and_a_passed_gate",),
             "`doit tune` chooses only a candidate whose CI says it is faster and that passes the accuracy gate"),
    Mutation("tune-cache", "dmsbuild/pipeline/tune/run.py",
             "        if cached.is_file():\n            row.measurement, row.cached = json.loads(cached.read_text()), True\n",
             "        if False:\n            row.measurement, row.cached = json.loads(cached.read_text()), True\n",
             ("tests/test_tune.py::test_second_tune_measures_nothing_new",),
             "a second `doit tune` measures only what is new"),
    Mutation("tune-scratch-switched", A,
             "    stage(root, rid, files)  # (the same id as a kept release: the same files, repaired in place if need be)\n",
             "    stage(root, rid, files)  # (the same id as a kept release: the same files, repaired in place if need be)\n"
             "    switch(root, rid)\n",
             ("tests/test_tune.py::test_a_scratch_release_is_never_current_and_is_discarded_or_collected",),
             "`doit tune`'s scratch release is never made the board's current release"),
    Mutation("tune-discard-current", A,
             '    removed = [rid for rid in req["release_ids"] if rid not in kept and rid in made]\n',
             '    removed = [rid for rid in req["release_ids"] if rid in made]\n',
             ("tests/test_tune.py::test_a_scratch_release_is_never_current_and_is_discarded_or_collected",),
             "discarding scratch releases never removes the current release or one in the history"),
    # ---------------------------------------------------------------- mixed precision (issue 16)
    Mutation("mixed-precision-rank-order", "dmsbuild/convert/mixed_precision.py",
             "    out.sort(key=lambda s: -(s.loss_db if s.loss_db is not None else -math.inf))\n",
             "    out.sort(key=lambda s: (s.loss_db if s.loss_db is not None else -math.inf))\n",
             ("tests/test_mixed_precision.py::test_ranking_puts_the_outlier_consumer_first",),
             "nodes are ranked worst first: the node whose quantization loses most SQNR is the first kept in float"),
    Mutation("mixed-precision-exclusion-applied", "dmsbuild/convert/quantize.py",
             "                nodes_to_exclude=list(cfg.nodes_to_exclude),\n", "                nodes_to_exclude=[],\n",
             ("tests/test_mixed_precision.py::test_excluding_the_ranked_nodes_passes_the_gate",
              "tests/test_quant_recipe.py::test_build_records_format_and_rebuilds_only_on_change"),
             "nodes_to_exclude reaches ONNX Runtime's quantizer: the excluded nodes are float in the artifact"),
    # ---------------------------------------------------------------- pruning (issue 12)
    Mutation("prune-round-to-applied", "dmsbuild/convert/qat.py",
             "round_to=round_to if round_to > 1 else None)", "round_to=None)",
             ("tests/test_qat.py::test_pruning_keeps_channel_multiples_and_never_empties_a_layer",),
             "pruning keeps channel counts in multiples of prune.round_to (the runtime's fast kernels)"),
    Mutation("prune-never-unpruned-by-rounding", "dmsbuild/convert/qat.py",
             "pruner = _block_pruner(tp)(model,", "pruner = tp.pruner.MetaPruner(model,",
             ("tests/test_qat.py::test_pruning_keeps_channel_multiples_and_never_empties_a_layer",),
             "a layer that rounding would empty keeps one block (torch-pruning's own rounding leaves it unpruned)"),
    Mutation("prune-round-to-by-runtime", "dmsbuild/config.py",
             "round_to=PRUNE_CHANNEL_BLOCK[profile.runtime]))", "round_to=16))",
             ("tests/test_qat.py::test_prune_round_to_resolves_to_the_target_runtimes_block",),
             "prune.round_to = 0 resolves to the target runtime's channel block (16 ONNX Runtime, 32 TensorRT/QNN/SNPE)"),
    Mutation("prune-round-to-key", "dmsbuild/convert/quantize.py",
             'if "prune" in static and (cfg.prune.fraction == 0 or cfg.prune.round_to == 1):',
             'if "prune" in static:',
             ("tests/test_qat.py::test_round_to_keeps_old_keys_where_it_changes_nothing",),
             "a different channel alignment is a different model (retrains); where it changes nothing, keys stay"),
    Mutation("prune-batchnorm-recalibrated", "dmsbuild/convert/qat.py",
             "        m.momentum = None  # cumulative average", "        pass  # cumulative average",
             ("tests/test_qat.py::test_batchnorm_recalibration_matches_the_data_and_restores_modes",),
             "after pruning, BatchNorm statistics are re-estimated on the training images before the fine-tune"),
    # ---------------------------------------------------------------- issue 27: the user's own ssh and Ansible set-up
    Mutation("ssh-agent-key-matching-identityfile", "dmsbuild/transport/ssh.py",
             "        if hit is not None:\n", "        if hit is not None and not identities_only:\n",
             ("tests/test_ssh_identities.py",),
             "with IdentitiesOnly yes, the agent key matching an IdentityFile is offered (a passphrase key in ssh-agent works)"),
    Mutation("ssh-identities-only-drops-other-agent-keys", "dmsbuild/transport/ssh.py",
             "        elif not identities_only:\n", "        else:\n",
             ("tests/test_ssh_identities.py",),
             "IdentitiesOnly yes offers no agent key that matches no IdentityFile"),
    Mutation("inventory-unselected-problem-is-a-warning", "dmsbuild/ship/inventory.py",
             "            if p.name not in chosen:\n", "            if False:\n",
             ("tests/test_inventory.py", "tests/test_fleet_ssh.py::test_problem_hosts_outside_the_deploy_are_warnings_inside_it_one_line"),
             "a problem on a board the deploy does not select is one warning line, never a stop"),
    Mutation("ansible-host-problem-not-file-refusal", "dmsbuild/ship/ansible.py",
             "                problems[h] = HostProblem(h, host_groups, exc, merged)", "                raise",
             ("tests/test_ansible_conformance.py::test_integration_inventories_have_the_expected_outcome",),
             "one bad host of an Ansible inventory never makes the file unusable"),
    Mutation("inventory-proxycommand-refused-by-setting", "dmsbuild/ship/inventory.py",
             '                if commands == "refuse":\n', "                if False:\n",
             ("tests/test_inventory.py::test_inventory_proxycommand_is_one_line_per_board_or_refused",),
             "deploy.inventory_commands = \"refuse\" stops a deploy whose inventory runs a local command (issue 30)"),
    Mutation("resume-check-attempt-counts", "dmsbuild/pipeline/deploy.py",
             "            board.connect_retries -= spent\n", "            pass\n",
             ("tests/test_fleet_ssh.py::test_a_frozen_board_costs_connect_retries_attempts_resume_check_included",),
             "a frozen board costs connect_retries attempts in a deploy, the resume check's included"),
    Mutation("ansible-template-evaluated", "dmsbuild/ship/ansible.py",
             'merged[v] = (msg.get(v), f"{merged[v][1]} (evaluated by Ansible)")', "merged[v] = merged[v]",
             ("tests/test_inventory.py::test_templated_values_of_selected_hosts_are_evaluated_by_ansible",),
             "a selected host's templated value is the one Ansible evaluates"),
    # ---------------------------------------------------------------- issue 31: numbers that reproduce
    Mutation("report-baseline-is-the-fp32-artifact", "dmsbuild/measure/report.py",
             'fp32 = [b for b in same if b["artifact"] == "fp32" and b["precision"] == "fp32"]',
             'fp32 = [b for b in same if b["precision"] == "fp32"]',
             ("tests/test_report.py::test_vs_fp32_uses_the_fp32_artifact_not_a_tuned_fp32_artifact",),
             "the report's speed-up is against the FP32 artifact, not the last fp32-precision row (a tuned one)"),
    Mutation("report-current-release-only", "dmsbuild/measure/report.py",
             'if current is None or r["release_id"] == current:', "if True:",
             ("tests/test_report.py::test_a_rolled_back_release_is_marked_and_the_current_one_is_shown",), "a rolled-back release never stands as the board's figures"),
    Mutation("report-accelerator-baseline", "dmsbuild/measure/report.py",
             "    if other:\n", "    if False:\n",
             ("tests/test_report.py::test_targets_without_an_fp32_artifact_get_a_named_baseline",),
             "orin and qcs8255 get a speed-up against the board's CPU FP32"),
    Mutation("state-tools-by-kind", "dmsbuild/measure/bench.py",
             'tools = board_state.state_tools(facts, {str(a.get("runtime")) for a in entries})', "tools = None",
             ("tests/test_measurements.py::test_an_emulated_rpi5_benchmark_carries_no_jetson_state_and_no_energy",),
             "an emulated rpi5 carries no Jetson state and no Jetson energy figure"),
    Mutation("sentinel-sensor-off", "dmsbuild/measure/board_state.py",
             "if value <= SENSOR_OFF_C + 0.5:", "if False:",
             ("tests/test_measurements.py::test_a_powered_down_orin_sensor_is_no_temperature",),
             "Orin's -256C (sensor off) is never a temperature"),
    Mutation("energy-source-double", "dmsbuild/core/provenance.py",
             'return "double" if "tegrastats" in', 'return "board-tegrastats" if "tegrastats" in',
             ("tests/test_measurements.py::test_energy_carries_its_source_next_to_the_number_in_the_export",), "a generated energy figure says so in the export"),
    Mutation("harness-spinning-off", "dmsbuild/board/runner/dms_bench.py",
             '                sides[side] = _open_side(folder, art, threads, warmup, spinning=isolation != "spin-off")',
             '                sides[side] = _open_side(folder, art, threads, warmup, spinning=True)',
             ("tests/test_runner.py::test_interleave_with_an_aa_control_in_each_isolation",), "the interleaved harness turns spinning off on every session"),
    Mutation("harness-spin-off-entries", "dmsbuild/board/runner/dms_bench.py",
             'SPIN_OFF = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}',
             'SPIN_OFF = {"session.intra_op.allow_spinning": "1", "session.inter_op.allow_spinning": "1"}',
             ("tests/test_runner.py::test_the_bias_a_multithreaded_session_burns_cores_after_its_run_and_the_harness_session_does_not",),
             "the harness's sessions do not spin on the cores their neighbour is timed on"),
    Mutation("aa-control-excludes-one", "dmsbuild/measure/regression.py",
             "        if not self.ci_low <= 1.0 <= self.ci_high:\n", "        if False:\n",
             ("tests/test_measurements.py::test_a_noisy_or_biased_control_refuses_the_verdict_in_one_line",), "an A/A control whose interval excludes 1.00 refuses the verdict"),
    Mutation("aa-control-width", "dmsbuild/measure/regression.py",
             "        if self.width > self.max_width:\n", "        if False:\n",
             ("tests/test_measurements.py::test_a_noisy_or_biased_control_refuses_the_verdict_in_one_line",), "an A/A control wider than the stated width refuses the verdict"),
    Mutation("tune-refuses-on-noisy-control", "dmsbuild/pipeline/tune/choice.py",
             "    refused = confirmation_refusal(m)\n    if refused:\n        return refused\n",
             "    refused = None\n",
             ("tests/test_tune.py::test_a_failed_aa_control_refuses_to_choose_in_one_line",),
             "`doit tune` refuses to choose when the confirmation's A/A control fails"),
    Mutation("tune-unconfirmed-choice", "dmsbuild/pipeline/tune/choice.py",
             "    if m[\"ci_high\"] >= 1.0:\n", "    if False:\n",
             ("tests/test_tune.py::test_the_choice_states_the_confirmations_figures_and_an_unconfirmed_leader_leaves_the_default",),
             "a leader the confirmation does not show faster is not chosen"),
    Mutation("tune-confirmation-figures-dropped", "dmsbuild/pipeline/tune/choice.py",
             "    row.measurement = {**(row.measurement or {}), **m, \"search\": search}\n",
             "    row.measurement = {**m, **(row.measurement or {}), \"search\": search}\n",
             ("tests/test_tune.py::test_the_choice_states_the_confirmations_figures_and_an_unconfirmed_leader_leaves_the_default",),
             "the choice states the confirmation's figures, not the search's (which picking the best flatters)"),
    Mutation("check-tune-load-refusal", "bench/check_tune.py",
             "    if load0 > 1.0:\n", "    if load0 > 100.0:\n",
             ("tests/test_tune.py::test_check_tune_refuses_a_ratio_on_a_busy_machine",), "the independent check prints no ratio above a load average of 1"),
    # ---------------------------------------------------------------- the Mender route (docs/ota.md)
    Mutation("mender-check-failure-fails-install", MB,
             "    if failures:\n        event(conf, \"check_failed\"", "    if False:\n        event(conf, \"check_failed\"",
             (MT + "::test_failing_output_check_is_rolled_back_by_mender",),
             "a release failing its output check fails ArtifactInstall, so Mender rolls it back"),
    Mutation("mender-judge-floors", MB,
             "        for line in shared.failures(verify[\"heads\"], floors, verify[\"samples\"]):",
             "        for line in []:", (MT + "::test_failing_output_check_is_rolled_back_by_mender",),
             "the module judges the board's output check with the shared judge and the target's floors"),
    Mutation("mender-rollback-switches-back", MB,
             "        answer = agent(conf, tree, \"rollback\", {\"root\": root})",
             "        answer = {\"current\": previous}", (MT + "::test_failing_output_check_is_rolled_back_by_mender",),
             "ArtifactRollback has the agent switch the board back to the release it ran before"),
    Mutation("mender-rollback-first-install", MB,
             "    link = os.path.join(root, \"current\")  # the board had no release before this one: it has none again\n    os.unlink(link)\n",
             "    link = os.path.join(root, \"current\")  # the board had no release before this one: it has none again\n",
             (MT + "::test_failing_output_check_is_rolled_back_by_mender",),
             "a board with no release before a failed install has none after it, not the failed one"),
    Mutation("mender-commit-checks-running-release", MB,
             "or pending.get(\"state\") != \"installed\" or cur != rid:", "or pending.get(\"state\") != \"installed\":",
             (MT + "::test_commit_refuses_a_release_that_is_no_longer_running",),
             "ArtifactCommit fails unless the checked release is the one running"),
    Mutation("mender-recover-interrupted", MB,
             "    back = undo(conf, tree, pending)\n    os.unlink(pending_path(conf))\n    event(conf, \"recovered\"",
             "    back = current_id(conf[\"root\"])\n    os.unlink(pending_path(conf))\n    event(conf, \"recovered\"",
             (MT + "::test_interrupted_install_leaves_old_or_new_never_half",),
             "an install whose client died is undone before the next one, so Mender and the board agree"),
    Mutation("mender-lineage", MB, "    if have != want:", "    if False:",
             (MT + "::test_other_device_type_and_other_lineage_are_refused",),
             "a board refuses another project's or target's release"),
    Mutation("mender-route-label", "dmsbuild/pipeline/ota.py",
             "        r[\"source\"] = with_route(r[\"source\"], ROUTE)", "        pass",
             (MT + "::test_good_release_installs_checks_commits_on_three_boards",),
             "figures that came through Mender are stored and reported with their route"),
    Mutation("mender-pull-once", "dmsbuild/pipeline/ota.py", "                    if run_id in known:\n                        continue\n", "",
             (MT + "::test_good_release_installs_checks_commits_on_three_boards",),
             "each results file a board left is stored once, however often it is pulled"),
    # ---------------------------------------------------------------- the installed tool (issue 32)
    Mutation("unknown-param-refused", "dmsbuild/tasks/__init__.py", "    if unknown:\n        given = ",
             "    if False:\n        given = ",
             ("tests/test_cli_params.py::test_unknown_parameter_is_refused_in_one_line",),
             "a name=value no task takes (host= for hosts=) is refused, not silently ignored"),
    Mutation("config-error-every-task", "dmsbuild/tasks/__init__.py",
             "        if err is not None:\n            yield user_error_task(basename, target, err)\n",
             "        if False:\n            yield user_error_task(basename, target, err)\n",
             ("tests/test_cli_params.py::test_config_error_is_named_at_every_command",),
             "a broken dmsbuild.toml fails deploy/bench/rollback with its own error, not a missing task dependency"),
    Mutation("option-form-param", "dmsbuild/tasks/__init__.py", "            if eq:\n                found[name] = value",
             "            if False:\n                found[name] = value",
             ("tests/test_cli_params.py::test_option_form_selects_like_the_variable_form",),
             "--target=X (what doit help shows) selects like target=X, in every generator"),
    Mutation("config-path-in-project", "dmsbuild/config.py", "        p = p if p.is_absolute() else self.root / p\n",
             "        p = p if p.is_absolute() else Path.cwd() / p\n",
             ("tests/test_cli_new.py::test_config_paths_resolve_against_the_project_folder",),
             "a relative path of dmsbuild.toml resolves in the project folder, whatever the working directory"),
    Mutation("package-path-refused", "dmsbuild/config.py", "        path.resolve().relative_to(package_dir())",
             "        path.resolve().relative_to(package_dir() / \"nowhere\")",
             ("tests/test_cli_new.py::test_config_path_into_dmsbuild_is_refused",
              "tests/test_cli_new.py::test_init_refuses_data_inside_dmsbuild"),
             "a configured or typed path into dmsbuild's own installation is refused in one line"),
    Mutation("boards-placement-remembered", "dmsbuild/boards.py", "    mem = remembered(where)", "    mem = {}",
             ("tests/test_package.py::test_boards_placement_is_chosen_once_and_remembered",
              "tests/test_package.py::test_boards_up_then_bare_up_keeps_the_placement"),
             "a bare `boards up` puts the boards back on the address and port the inventory names"),
    Mutation("doubles-are-package-data", "dmsbuild/boards.py",
             'DOUBLES = Path(str(resources.files("dmsbuild") / "doubles"))',
             'DOUBLES = Path(__file__).resolve().parents[1] / "tests" / "doubles"',
             ("tests/test_package.py::test_runtime_files_are_found_in_the_package",
              "tests/test_package.py::test_no_module_reaches_outside_the_package"),
             "an installed dmsbuild finds the emulated boards' vendor-tool doubles in its own package"),
    Mutation("deploy-notes-collapsed", "dmsbuild/pipeline/deploy.py", "            m = _BASELINE.match(n)\n",
             "            m = None\n",
             ("tests/test_deploy_task.py::test_deploy_output_is_one_line_per_board_and_notes_once",),
             "a new latency baseline is said once for all boards and artifacts, not once per artifact per board"),
    Mutation("cli-path-working-directory", "dmsbuild/tasks/__init__.py",
             "    return str(p if p.is_absolute() else Path.cwd() / p)", "    return value",
             ("tests/test_cli_params.py::test_path_parameter_resolves_against_the_working_directory",),
             "inventory= typed on the command line is relative to the folder doit runs in"),
    Mutation("report-md-no-quote-entities", "dmsbuild/untrusted.py", 's), quote=False)\n',
             's))\n', ("tests/test_report.py::test_markdown_has_no_html_entities_for_quotes",),
             "report.md says machine's, not machine&#x27;s"),
    # ---------------------------------------------------------------- a failing release never stays current (issue 24)
    Mutation("first-deploy-failure-stays", A, "        if req.get(\"failed\"):\n            return no_release(root, cur, skipped)\n", "",
             ("tests/test_first_deploy_gate.py::test_a_first_deploy_that_fails_its_gate_leaves_no_release_current",),
             "a board whose first release fails its gate is left with no release, not the failing one"),
    Mutation("rollback-to-failed-release", A, "    while hist and verdicts.get(hist[-1]) == \"failed\":",
             "    while False:",
             ("tests/test_first_deploy_gate.py::test_rollbacks_skip_a_release_that_failed_its_checks",),
             "rollbacks (automatic and doit rollback) go to the last release that passed its gate, never a failed one"),
    Mutation("verdict-not-recorded", "dmsbuild/ship/release.py", "            passed = judge(out) if judge is not None else None\n",
             "            passed = None\n",
             ("tests/test_first_deploy_gate.py::test_rollbacks_skip_a_release_that_failed_its_checks",),
             "the gate's verdict is recorded on the board at deploy time"),
    # ---------------------------------------------------------------- one verdict, same samples, host and board (issue 24)
    Mutation("floor-resolution-unchecked", "dmsbuild/core/accuracy.py", "        if 0 < limit.value < 1.0 / samples - 1e-9:",
             "        if False:",
             ("tests/test_same_samples.py::test_a_sample_count_that_cannot_resolve_its_floor_is_refused_in_one_line",),
             "a sample count whose one disagreement already exceeds its top-1 floor is refused"),
    Mutation("host-gate-own-samples", "dmsbuild/convert/evaluate.py",
             "    return available if n <= 0 else min(n, available, REFERENCE_SAMPLES)", "    return available",
             ("tests/test_same_samples.py::test_host_and_board_give_one_verdict_on_the_same_samples",
              "tests/test_same_samples.py::test_a_real_board_gives_the_host_verdict"),
             "the host gate judges the same first bench.verify_samples samples as the board"),
    Mutation("board-heads-by-safe-id", "dmsbuild/measure/gates.py",
             "        heads = {floors.name_of(key): m for key, m in verify[\"heads\"].items()}",
             "        heads = verify[\"heads\"]",
             ("tests/test_same_samples.py::test_a_per_head_floor_for_a_head_that_is_not_a_safe_id_applies_on_the_board",
              "tests/test_same_samples.py::test_a_real_board_gives_the_host_verdict"),
             "a per-head floor keyed by a tensor name that is not a safe id applies on the board"),
    Mutation("gate-samples-not-in-build-settings", "dmsbuild/tasks/build.py",
             "    settings[\"gate_samples\"] = prof.bench.verify_samples", "    pass",
             ("tests/test_incremental.py::test_one_profile_setting_rebuilds_only_that_target",),
             "a changed bench.verify_samples re-runs the target's build gate (its verdict depends on it)"),
    # ---------------------------------------------------------------- the interleaved harness (docs/measurements.md)
    Mutation("interleave-gap-off", "dmsbuild/board/runner/dms_bench.py",
             "                    time.sleep(GAP_S)  # the previous side's pool stops spin-waiting\n", "                    pass\n",
             ("tests/test_runner.py::test_interleave_with_an_aa_control_in_each_isolation",),
             "the default harness pauses before each side's block, so no pool spins into another side's timing"),
    Mutation("interleave-default-spin-off", "dmsbuild/board/runner/dms_bench.py",
             'p.add_argument("--isolation", choices=ISOLATIONS, default="gap",',
             'p.add_argument("--isolation", choices=ISOLATIONS, default="spin-off",',
             ("tests/test_runner.py::test_interleave_with_an_aa_control_in_each_isolation",),
             "tune and the gate time sessions with their deployed settings (spinning off biases multi-threaded sides)"),
    Mutation("tune-isolation-not-fresh", "dmsbuild/pipeline/tune/board.py", 'TUNE_ISOLATION = "fresh"\n',
             'TUNE_ISOLATION = "gap"\n',
             ("tests/test_tune_litert.py::test_tune_measures_both_runtimes_against_the_same_default",),
             "doit tune times every side's block in a fresh process, so its interval covers the session's luck"),
    Mutation("fresh-side-one-process", "dmsbuild/board/runner/dms_bench.py",
             "        w = _Worker(*self.args)\n        self.pids.add(w.proc.pid)\n        try:\n            return w(n)\n"
             "        finally:\n            w.close()\n",
             "        w = self.__dict__.get('w') or self.__dict__.setdefault('w', _Worker(*self.args))\n"
             "        self.pids.add(w.proc.pid)\n        try:\n            return w(n)\n        finally:\n            pass\n",
             ("tests/test_runner.py::test_interleave_with_an_aa_control_in_each_isolation",),
             "under fresh isolation every block is a new process (one long-lived process is one draw of its luck)"),
    Mutation("interleave-gap-too-short", "dmsbuild/board/runner/dms_bench.py", "GAP_S = 0.1\n", "GAP_S = 0.0\n",
             ("tests/test_runner.py::test_the_bias_a_multithreaded_session_burns_cores_after_its_run_and_the_harness_session_does_not",),
             "the harness's pause outlasts ONNX Runtime's spin-wait, so the next side is timed on quiet cores"),
]


# issue 25: the promise classes' mutations (tests/test_promises_*.py), kept in their own file
sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutation_promises import promise_mutations  # noqa: E402

M += [
    Mutation("report-same-second-by-hash", "dmsbuild/measure/report.py", "reports.sort(key=lambda r: r[:2])",
             "reports.sort(key=lambda r: r[:1])",
             ("tests/test_verdict.py::test_two_rollouts_in_one_second_are_ordered_by_when_their_reports_were_written",),
             "two rollouts in the same second: the later one's release is the board's current one in the report"),
    Mutation("tune-no-litert-part", "dmsbuild/backends/onnxruntime.py",
             "        return [litert.BACKEND.tune_part(profile, enable)]", "        return []",
             ("tests/test_tune_litert.py::test_the_space_has_litert_points_when_the_target_ships_tflite",),
             "an onnxruntime target shipping [backend] tflite has LiteRT candidates in its tune space"),
    Mutation("tune-litert-choice-not-refused", "dmsbuild/pipeline/tune/space.py",
             "    if part is None or not part.precisions:", "    if False:",
             ("tests/test_tune_litert.py::test_a_litert_choice_on_a_target_without_tflite_is_refused_in_one_line",),
             "a choice file naming LiteRT on a target that ships no .tflite is refused in one line"),
]
M += promise_mutations(Mutation)


@dataclass
class Row:
    mutation: Mutation
    status: str  # killed | SURVIVED | snippet not found | ...
    seconds: float = 0.0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status.startswith("killed")


def copy_repo(dest: Path) -> Path:
    """The working tree's tracked and untracked-but-not-ignored files (uncommitted edits included)."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for n in filter(None, names):
        src = REPO / n
        if src.is_file() and not src.is_symlink():
            (dest / n).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / n)
    venv = REPO / ".venv"
    if venv.exists():
        (dest / ".venv").symlink_to(venv.resolve())
    return dest


def run_tests(copy: Path, tests: tuple[str, ...], timeout: int) -> tuple[int | None, str]:
    """pytest on ``tests`` in ``copy`` (its dmsbuild first on the path); (rc or None on timeout, output tail)."""
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]
    proc = subprocess.Popen(cmd, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the group we started (start_new_session): pytest and its children
        out, _ = proc.communicate()
        return None, out.decode(errors="replace")[-2000:]
    return proc.returncode, out.decode(errors="replace")[-2000:]


def apply(copy: Path, m: Mutation) -> tuple[str | None, str]:
    """Mutate ``copy``'s file; (error status or None, original text)."""
    path = copy / m.file
    if not path.is_file():
        return "snippet not found", ""
    text = path.read_text()
    n = text.count(m.find)
    if n != 1:
        return ("snippet not found" if n == 0 else f"snippet not unique ({n}x)"), text
    mutated = text.replace(m.find, m.replace)
    if m.file.endswith(".py"):
        try:
            compile(mutated, m.file, "exec")
        except SyntaxError as exc:
            return f"mutation does not compile ({exc.msg})", text
    path.write_text(mutated)
    return None, text


def mutate_and_test(copy: Path, m: Mutation, timeout: int) -> Row:
    t0 = time.monotonic()
    err, original = apply(copy, m)
    if err:
        return Row(m, err)
    try:
        rc, out = run_tests(copy, m.tests, timeout)
    finally:
        (copy / m.file).write_text(original)
    secs = time.monotonic() - t0
    if rc is None:
        return Row(m, "timeout", secs, out)
    status = {0: "SURVIVED", 1: "killed", 5: "no tests ran"}.get(rc, f"test error (rc {rc})")
    return Row(m, status, secs, out)


def table(rows: list[Row], markdown: bool = False) -> str:
    head = ("mutation", "file", "tests run", "result", "s")
    body = [(r.mutation.name, r.mutation.file.removeprefix("dmsbuild/"),
             " ".join(t.removeprefix("tests/") for t in r.mutation.tests), r.status, f"{r.seconds:.0f}") for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(tuple("-" * w for w in widths)), *map(fmt, body)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="run only these mutations (default: all)")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="mutations tested at a time (one repo copy each)")
    ap.add_argument("--list", action="store_true", help="print the mutations and exit")
    ap.add_argument("--markdown", action="store_true", help="print the result table as Markdown")
    ap.add_argument("--no-baseline", action="store_true", help="skip running the tests once unmutated first")
    ap.add_argument("--timeout", type=int, default=TIMEOUT_S, help="seconds per mutation's tests")
    args = ap.parse_args(argv)
    names = [m.name for m in M]
    assert len(set(names)) == len(names), "duplicate mutation names"
    unknown = [n for n in args.names if n not in names]
    if unknown:
        print(f"unknown mutation(s): {', '.join(unknown)}; --list shows them", file=sys.stderr)
        return 2
    chosen = [m for m in M if not args.names or m.name in args.names]
    if args.list:
        for m in chosen:
            print(f"{m.name:34} {m.file:32} {' '.join(m.tests)}\n{'':34} {m.promise}")
        return 0

    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dms-mutation-") as tmp:
        copies = [copy_repo(Path(tmp) / f"w{i}") for i in range(max(1, min(args.jobs, len(chosen))))]
        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            print(f"baseline: {len(tests)} test selections on the unmutated code ...", flush=True)
            rc, out = run_tests(copies[0], tests, args.timeout * 3)
            if rc != 0:
                print(out, "\nbaseline FAILED: the tests fail without any mutation; fix that first", file=sys.stderr)
                return 1
        free = list(copies)
        lock = threading.Lock()

        def work(m: Mutation) -> Row:
            with lock:
                copy = free.pop()
            try:
                row = mutate_and_test(copy, m, args.timeout)
            finally:
                with lock:
                    free.append(copy)
            print(f"  {row.status:18} {m.name} ({row.seconds:.0f} s)", flush=True)
            return row

        with ThreadPoolExecutor(max_workers=len(copies)) as pool:
            rows = list(pool.map(work, chosen))
    total = time.monotonic() - t_start
    print()
    print(table(rows, markdown=args.markdown))
    killed = sum(r.ok for r in rows)
    print(f"\n{killed} of {len(rows)} mutations killed in {total:.0f} s (-j {len(copies)})")
    for r in rows:
        if r.status in ("SURVIVED", "timeout") or r.status.startswith(("test error", "no tests")):
            print(f"\n--- {r.mutation.name}: {r.status} ({r.mutation.promise})\n{r.detail[-1200:]}")
    if any(r.status.startswith(("snippet", "mutation does not compile")) for r in rows):
        return 2
    return 0 if killed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
