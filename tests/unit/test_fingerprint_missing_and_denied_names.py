"""What is missing stays in the fine key, whose value or which replica does not: a gem at
another version, a package's subpath, a pod's name, who a login failed for. Through the real
command: `heal diagnose --offline --json` in a subprocess."""

from __future__ import annotations

from pathlib import Path

from tests._diagnose import diagnose_fingerprints, diagnose_texts

_RBAC = ('Error from server (Forbidden): pods "{pod}" is forbidden: User '
         '"system:serviceaccount:build:runner" cannot create resource "pods/{sub}" in API '
         'group "" in the namespace "staging"\n')


def test_a_pods_subresource_is_kept_and_its_name_masked(tmp_path: Path) -> None:
    found = diagnose_fingerprints(tmp_path, {
        "exec": _RBAC.format(pod="worker-5b7c9d-x2kq1", sub="exec"),
        "exec_other_pod": _RBAC.format(pod="worker-84f6a1-mm7zt", sub="exec"),
        "attach": _RBAC.format(pod="worker-5b7c9d-x2kq1", sub="attach"),
        "log": _RBAC.format(pod="worker-5b7c9d-x2kq1", sub="log"),
        "has": "0/4 nodes are available: pod has unbound immediate PersistentVolumeClaims.\n",
        "is": "0/4 nodes are available: pod is unbound immediate PersistentVolumeClaims.\n",
    })
    # three subresources, three RBAC grants: three fine keys (the pod mask took 'exec')
    assert len({found[k]["fine"] for k in ("exec", "attach", "log")}) == 3
    assert found["exec"]["fine"] == found["exec_other_pod"]["fine"]
    # prose after 'pod ' is no name: two sentences, two keys
    assert found["has"]["fine"] != found["is"]["fine"]


_GEM = ("Could not find {gem} in locally installed gems\n"
        "Run `bundle install` to install missing gems.\n")


def test_a_missing_gem_keys_on_its_name_not_its_release(tmp_path: Path) -> None:
    answers = diagnose_texts(tmp_path, {
        "sassc_new": _GEM.format(gem="sassc-2.4.0"),
        "sassc_old": _GEM.format(gem="sassc-2.1.0"),
        "sassc_native": _GEM.format(gem="sassc-2.4.0-arm64-darwin"),
        "grpc_tools": _GEM.format(gem="grpc-tools-2.4.0"),
        "puma": _GEM.format(gem="puma-2.1.0"),
    })
    fine = {k: a["fingerprint"]["fine"] for k, a in answers.items()}
    # another release (or platform) of one gem is one missing gem
    assert fine["sassc_new"] == fine["sassc_old"] == fine["sassc_native"]
    # other gems at one version are other gems
    assert len({fine["sassc_new"], fine["grpc_tools"], fine["puma"]}) == 3
    assert answers["grpc_tools"]["params"]["package"] == "grpc-tools"
    assert len({a["fingerprint"]["coarse"] for a in answers.values()}) == 1


_NODE = ("node:internal/modules/cjs/loader:1080\n  throw err;\n  ^\n\n"
         "Error: Cannot find module '{spec}'\nRequire stack:\n- /srv/api/server.js\n"
         "    at Module._resolveFilename (node:internal/modules/cjs/loader:1077:15)\n"
         "    at Object.<anonymous> (/srv/api/server.js:3:17) {{\n"
         "  code: 'MODULE_NOT_FOUND',\n  requireStack: [ '/srv/api/server.js' ]\n}}\n")


def test_a_missing_node_package_keys_on_its_name_not_the_subpath(tmp_path: Path) -> None:
    answers = diagnose_texts(tmp_path, {
        "dayjs": _NODE.format(spec="dayjs"),
        "dayjs_plugin": _NODE.format(spec="dayjs/plugin/utc"),
        "scoped": _NODE.format(spec="@aws-sdk/client-s3"),
        "scoped_sub": _NODE.format(spec="@aws-sdk/client-s3/dist-cjs/index.js"),
        "other_scoped": _NODE.format(spec="@aws-sdk/client-sqs"),
        "moment": _NODE.format(spec="moment"),
    })
    fine = {k: a["fingerprint"]["fine"] for k, a in answers.items()}
    assert fine["dayjs"] == fine["dayjs_plugin"]
    assert fine["scoped"] == fine["scoped_sub"]
    assert len({fine["dayjs"], fine["scoped"], fine["other_scoped"], fine["moment"]}) == 4
    # the package to install is the package, whatever part of it was imported
    assert answers["dayjs_plugin"]["params"]["package"] == "dayjs"
    assert answers["scoped_sub"]["params"]["package"] == "@aws-sdk/client-s3"


def test_a_missing_role_is_what_is_missing_a_refused_user_is_who(tmp_path: Path) -> None:
    found = diagnose_fingerprints(tmp_path, {
        "role_a": 'FATAL:  role "reporting" does not exist\n',
        "role_b": 'FATAL:  role "etl_loader" does not exist\n',
        "member_a": 'ERROR:  must be member of role "pg_write_all_data"\n',
        "member_b": 'ERROR:  must be member of role "owner_billing"\n',
        "login_a": 'FATAL:  password authentication failed for user "reporting"\n',
        "login_b": 'FATAL:  password authentication failed for user "etl_loader"\n',
        "mysql_a": "ERROR 1045 (28000): Access denied for user 'etl'@'172.16.4.2' "
                   "(using password: YES)\n",
        "mysql_b": "ERROR 1045 (28000): Access denied for user 'reports'@'172.16.4.9' "
                   "(using password: YES)\n",
    })
    # a role that does not exist, or that one must be a member of, is another cause
    # (another role to create or grant): the fine key keeps it, the coarse one masks it
    assert found["role_a"]["fine"] != found["role_b"]["fine"]
    assert found["role_a"]["coarse"] == found["role_b"]["coarse"]
    assert found["member_a"]["fine"] != found["member_b"]["fine"]
    assert found["member_a"]["coarse"] == found["member_b"]["coarse"]
    # a failed login is one error for any user
    assert found["login_a"]["fine"] == found["login_b"]["fine"]
    assert found["mysql_a"]["fine"] == found["mysql_b"]["fine"]
