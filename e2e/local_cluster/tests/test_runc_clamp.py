"""runc_clamp fits an OCI spec to what this machine allows root, and nothing more: the parts a runtime sends
that it must leave alone, or pass on untouched when it cannot read them."""

import json

from local_cluster.runc_clamp import CAPABILITIES, fit, fit_file

PRIVILEGED = list(CAPABILITIES[:38])  # what Docker 20.10 asks for a privileged container
UNPRIVILEGED = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID"]


def process(adj=None, capabilities=None) -> dict:
    spec = {"args": ["/sbin/init"]}
    if adj is not None:
        spec["oomScoreAdj"] = adj
    if capabilities is not None:
        spec["capabilities"] = {kind: list(capabilities) for kind in ("bounding", "effective", "permitted")}
    return spec


def test_a_privileged_container_loses_only_what_root_lacks():
    spec = process(capabilities=PRIVILEGED)
    assert fit(spec, {"CAP_SYS_RESOURCE"})
    for kind in ("bounding", "effective", "permitted"):
        assert spec["capabilities"][kind] == [c for c in PRIVILEGED if c != "CAP_SYS_RESOURCE"]


def test_an_unprivileged_container_and_a_machine_that_withholds_nothing_change_nothing():
    spec = process(adj=0, capabilities=UNPRIVILEGED)
    assert not fit(spec, {"CAP_SYS_RESOURCE"}) and spec == process(adj=0, capabilities=UNPRIVILEGED)
    spec = process(adj=-998, capabilities=PRIVILEGED)
    assert not fit(spec, set()) and spec == process(adj=-998, capabilities=PRIVILEGED)


def test_a_negative_oom_score_is_raised_only_where_root_may_not_lower_it():
    sandbox = process(adj=-998)
    assert fit(sandbox, {"CAP_SYS_RESOURCE"}) and sandbox["oomScoreAdj"] == 0
    other = process(adj=-998)
    assert not fit(other, {"CAP_BPF"}) and other["oomScoreAdj"] == -998


def test_specs_it_cannot_read_reach_runc_as_they_came(tmp_path):
    for text in ('{"process": null}', '{"process": {"oomScoreAdj": null, "capabilities": {"bounding": null}}}',
                 "[1, 2]", "not json", '{"process": {"capabilities": "CAP_SYS_ADMIN"}}'):
        spec_file = tmp_path / "config.json"
        spec_file.write_text(text)
        fit_file(str(spec_file), in_process=False, withheld={"CAP_SYS_RESOURCE"})
        assert spec_file.read_text() == text


def test_an_exec_process_file_is_fitted_like_a_bundle(tmp_path):
    process_file = tmp_path / "process.json"
    process_file.write_text(json.dumps(process(adj=-5, capabilities=PRIVILEGED)))
    fit_file(str(process_file), in_process=True, withheld={"CAP_SYS_RESOURCE"})
    fitted = json.loads(process_file.read_text())
    assert fitted["oomScoreAdj"] == 0 and "CAP_SYS_RESOURCE" not in fitted["capabilities"]["effective"]
