"""Train: start a job (the chosen layers, or a sweep over all layers), follow it live, cancel or resume.

Every widget that shows a job (picker, panel, table, sidebar) is read from the job files at each
refresh; while a job is active the job area refreshes every REFRESH_S seconds and a change of any
job's state draws the whole page again."""
from __future__ import annotations

import copy
from typing import Optional

import streamlit as st

from encoding_core.studio import (
    ACTIVE_JOB_STATES,
    EncodingCoreError,
    any_job_active,
    job_eta_text,
    job_label,
    job_progress,
    job_rows,
    jobs_signature,
    parse_scheduler,
    resume_report,
    scheduler_label,
    trimming_preview,
    worker_rows,
)
from pages import _common as common

common.enter_through_app()  # a page URL opened directly: draw it through app.py's router

REFRESH_S = 1.5  # seconds between two reads of the job files while a job is active

st.title("Train")
st.caption("Training runs in a separate background process; you can switch pages or reload the browser.")
cfg = common.config()
manager = common.jobs()


def _problems() -> list[str]:
    """Why the current experiment cannot start yet (empty when it can)."""
    current = common.assembly()
    if current is None:
        return ["no assembly is loaded (Assembly page)"]
    problems = []
    missing = [n for n, p in zip(current.stories, current.get_audio_path()) if not p]
    if missing:
        problems.append(f"no audio for {missing} (Audio page)")
    rows = trimming_preview(current, cfg.alignment.trimming, cfg.assembly.test_story or None, cfg.ridge.mode)
    bad = [f"{r['story']} ({r['features']} vs {r['targets']} TRs)" for r in rows if not r["match"]]
    if bad:
        problems.append(f"trimmed lengths differ for {bad} (Setup page)")
    try:
        cfg.validate()
    except EncodingCoreError as exc:
        problems.append(str(exc))
    return problems


def _scheduler_input() -> tuple[Optional[str], Optional[str]]:
    """The typed Dask scheduler (None = this machine) and the reason it is invalid (None when valid)."""
    text = st.text_input(
        "Dask scheduler address", value=st.session_state.get(common.SCHEDULER_KEY, ""), key="scheduler_address",
        placeholder="empty = this machine; local:2 or tcp://HOST:8786",
        help="Empty: train in one background process on this machine. `local:N`: a Dask cluster of N worker "
             "processes on this machine. `tcp://HOST:8786`: a running `dask scheduler` (stories are extracted "
             "and layers fitted on its workers; the cache and results folders must be shared with them).")
    st.session_state[common.SCHEDULER_KEY] = text
    if not text.strip():
        return None, None
    try:
        parse_scheduler(text)
    except EncodingCoreError as exc:
        st.error(f"Dask scheduler address: {exc}")
        return None, "the Dask scheduler address is not valid (see above)"
    st.caption(f"The job will run on the {scheduler_label(text.strip())}.")
    return text.strip(), None


def _start(sweep: bool, scheduler: Optional[str]) -> None:
    job_config = copy.deepcopy(cfg)
    if sweep:
        job_config.layers = "all"
    with common.user_errors("Starting the job"):
        st.session_state[common.JOB_KEY] = manager.start(job_config, scheduler=scheduler)
        st.toast("Job started.")
        st.rerun()  # the sidebar and the job list show the new job at once


current = common.assembly()
if current is not None and current.simulated:
    common.simulated_banner("assembly")
common.how_this_works("train")

scheduler, scheduler_problem = _scheduler_input()
problems = _problems() + ([scheduler_problem] if scheduler_problem else [])
if cfg.layers == "all":  # Train and Sweep would do the same: one button
    if st.button("Train all layers", type="primary", disabled=bool(problems), key="start_train"):
        _start(sweep=False, scheduler=scheduler)
    st.caption("Fits one encoding model per layer of the model (a layer profile). Choose single layers on the "
               "Model & layer page to train only those.")
else:
    c1, c2 = st.columns(2)
    if c1.button(f"Train layers {cfg.layers}", type="primary", disabled=bool(problems), key="start_train"):
        _start(sweep=False, scheduler=scheduler)
    if c2.button("Sweep all layers", disabled=bool(problems), key="start_sweep"):
        _start(sweep=True, scheduler=scheduler)
    st.caption(f"**Train** fits the layers chosen on the Model & layer page ({cfg.layers}). **Sweep** fits every "
               "layer of the model, for a layer profile. The features cost the same (one forward pass gives every "
               "layer); each extra layer adds one ridge fit and its statistics.")
for problem in problems:
    st.warning(f"Cannot start yet: {problem}.")


def _job_panel(status) -> None:
    """One job, from its files: state, what it does or where it stopped, time left, actions."""
    job_id = status.job_id
    eta = job_eta_text(status)
    st.markdown(f"**State:** {status.state}" + (f" · **time left:** {eta}" if eta else ""))
    if status.scheduler:
        st.markdown(f"**Runs on:** {scheduler_label(status.scheduler)} (`{status.scheduler}`)")
    fraction, text = job_progress(status)
    st.progress(fraction, text=text)
    stages = status.stages or {}
    if stages and status.state != "done":
        st.dataframe([{"stage": name, **(info if isinstance(info, dict) else {"state": info})}
                      for name, info in stages.items()], hide_index=True, key=f"stages_{job_id}")
    if status.scheduler:
        if status.workers:
            st.caption("Per worker: stories extracted, layers fitted, busy seconds, tasks it holds now.")
            st.dataframe(worker_rows(status.workers), hide_index=True, key=f"workers_{job_id}")
        else:
            st.caption("No worker has reported yet.")
    if status.state in ACTIVE_JOB_STATES:
        if st.button("Cancel", key=f"cancel_{job_id}"):
            with common.user_errors("Cancelling"):
                manager.cancel(job_id)
                st.toast("Cancel requested: the job stops after its current unit of work.")
    elif status.state == "done" and status.run_id:
        st.success(f"Finished: run {status.run_id}.")
        if st.button("Show the results", type="primary", key=f"results_{job_id}"):
            st.session_state[common.RUN_KEY] = status.run_id
            st.switch_page(common.PAGES["Results"])
    elif status.state in ("failed", "interrupted", "cancelled"):
        if status.error:
            st.error(f"The job {status.state}: {status.error}")
        else:
            st.warning(f"The job was {status.state}.")
        report = None
        with common.user_errors("Checking the feature cache"):
            report = resume_report(manager, job_id)
        if report is not None:
            st.caption(report.text)
        if st.button("Resume", key=f"resume_{job_id}",
                     help="Start the same experiment again; features already in the cache are not recomputed."):
            with common.user_errors("Resuming"):
                st.session_state[common.JOB_KEY] = manager.resume(job_id)
                st.rerun()
    with st.expander("Log (last lines)"):
        with common.user_errors("Reading the log"):
            st.code(manager.log_tail(job_id) or "(empty)", language="text")


def _jobs_view() -> None:
    """Every job widget, read from the job files at each refresh; a change of any job's state
    draws the whole page again (so the sidebar follows)."""
    job_list = []
    with common.user_errors("Listing jobs"):
        job_list = manager.list()
    signature = jobs_signature(job_list)
    if st.session_state.get(SIGNATURE_KEY, signature) != signature:
        st.session_state[SIGNATURE_KEY] = signature
        st.rerun()
    st.session_state[SIGNATURE_KEY] = signature
    if not job_list:
        st.info("No jobs yet.")
        return
    by_id = {j.job_id: j for j in job_list}
    ids = list(by_id)
    selected = st.session_state.get(common.JOB_KEY)
    if selected not in by_id:
        selected = ids[0]
    st.session_state["job_pick"] = selected  # the picker follows the session's job (started, resumed, chosen)

    def picked() -> None:
        st.session_state[common.JOB_KEY] = st.session_state["job_pick"]

    job_id = st.selectbox("Job", ids, key="job_pick", on_change=picked, format_func=lambda i: job_label(by_id[i]))
    if st.session_state.get(common.JOB_KEY) != job_id:
        st.session_state[common.JOB_KEY] = job_id
        st.rerun()  # the sidebar names the job
    _job_panel(by_id[job_id])
    st.subheader("All jobs")
    st.dataframe(job_rows(job_list), hide_index=True, key="all_jobs")


SIGNATURE_KEY = "jobs_signature"
job_statuses = []
with common.user_errors("Listing jobs"):
    job_statuses = manager.list()
st.session_state[SIGNATURE_KEY] = jobs_signature(job_statuses)
st.fragment(run_every=REFRESH_S if any_job_active(job_statuses) else None)(_jobs_view)()
