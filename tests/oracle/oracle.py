"""Drives the sandbox's doubles with the official Azure SDKs for Python (tests/sdk_oracle.rs).

    python oracle.py GROUP SANDBOX_JSON

GROUP is one of appconfig-hmac, appconfig-entra, arm-sites, arm-slots, arm-static-sites. Each
runs every operation the product uses against one double, asserts what the SDK returns, and
prints one JSON object (what it did) on stdout. Any failure is an exception: a traceback on
stderr and a non-zero exit. The sandbox CA is trusted through connection_verify; tokens come
from the sandbox's managed-identity endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER of
sandbox.json's env), as App Service gives them to a process.
"""

import json
import sys
import urllib.parse
import urllib.request

from azure.core import MatchConditions
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ResourceExistsError,
)

# The demo data of src/sandbox/demo.rs the ARM groups read.
SUBSCRIPTION = "5a4db0c5-0000-4000-8000-00000000a5b1"
SUBSCRIPTION_RG_SITES = {
    "function_app": ("rg-orders", "func-orders"),
    "web_app": ("rg-web", "app-storefront"),
    "forbidden": ("rg-orders", "func-locked"),
    "static_site": ("rg-web", "swa-portal"),
}
ARM_SCOPE = "https://management.azure.com/.default"


class SandboxManagedIdentity:
    """A TokenCredential over the App Service managed-identity protocol (2019-08-01)."""

    def __init__(self, endpoint, header):
        self._endpoint = endpoint
        self._header = header
        self.requests = 0

    def get_token(self, *scopes, claims=None, tenant_id=None, enable_cae=False, **kwargs):
        assert len(scopes) == 1, scopes
        resource = scopes[0]
        if resource.endswith("/.default"):
            resource = resource[: -len("/.default")]
        query = urllib.parse.urlencode({"resource": resource, "api-version": "2019-08-01"})
        request = urllib.request.Request(
            f"{self._endpoint}?{query}", headers={"X-IDENTITY-HEADER": self._header}
        )
        # The identity endpoint is plain http on loopback: no proxy.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as response:
            body = json.load(response)
        self.requests += 1
        return AccessToken(body["access_token"], int(body["expires_on"]))


def load(path):
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    return info, info["caCertFile"]


def credential(info):
    env = info["env"]
    return SandboxManagedIdentity(env["IDENTITY_ENDPOINT"], env["IDENTITY_HEADER"])


def app_configuration(client, prefix):
    """get / add (If-None-Match: *) / set with If-Match / list with key and label filters."""
    from azure.appconfiguration import ConfigurationSetting

    done = []
    label = "oracle"
    first = ConfigurationSetting(key=f"{prefix}:ApiKey", label=label, value="v1",
                                 content_type="text/plain", tags={"owner": "oracle"})
    created = client.add_configuration_setting(first)
    assert created.value == "v1" and created.etag, created
    done.append("add")
    try:
        client.add_configuration_setting(first)
        raise AssertionError("adding an existing key-value must fail")
    except ResourceExistsError:
        done.append("add-existing-refused")

    got = client.get_configuration_setting(key=first.key, label=label)
    assert (got.value, got.etag, got.content_type, got.tags) == (
        "v1", created.etag, "text/plain", {"owner": "oracle"}), got
    done.append("get")

    got.value = "v2"
    updated = client.set_configuration_setting(got, match_condition=MatchConditions.IfNotModified)
    assert updated.value == "v2" and updated.etag != created.etag, updated
    done.append("set-if-match")

    stale = ConfigurationSetting(key=first.key, label=label, value="v3", etag=created.etag)
    try:
        client.set_configuration_setting(stale, match_condition=MatchConditions.IfNotModified)
        raise AssertionError("a stale If-Match must fail")
    except ResourceModifiedError:
        done.append("set-stale-refused")

    same = client.get_configuration_setting(
        key=first.key, label=label, etag=updated.etag, match_condition=MatchConditions.IfModified)
    assert same is None, same
    done.append("get-if-none-match")

    try:
        client.get_configuration_setting(key=f"{prefix}:Missing", label=label)
        raise AssertionError("a missing key-value must be 404")
    except ResourceNotFoundError:
        done.append("get-missing")

    client.set_configuration_setting(ConfigurationSetting(key=f"{prefix}:Other", label=label, value="o"))
    client.set_configuration_setting(ConfigurationSetting(key=f"{prefix}:ApiKey", value="null-label"))
    listed = sorted(
        (s.key, s.label, s.value)
        for s in client.list_configuration_settings(key_filter=f"{prefix}:*", label_filter=label)
    )
    assert listed == [(f"{prefix}:ApiKey", label, "v2"), (f"{prefix}:Other", label, "o")], listed
    null_label = [(s.key, s.label) for s in
                  client.list_configuration_settings(key_filter=f"{prefix}:*", label_filter="\0")]
    assert null_label == [(f"{prefix}:ApiKey", None)], null_label
    selected = list(client.list_configuration_settings(
        key_filter=f"{prefix}:ApiKey", label_filter=label, fields=["key", "value"]))
    assert [(s.key, s.value, s.etag) for s in selected] == [(f"{prefix}:ApiKey", "v2", None)], selected
    done.append("list")
    return done


def appconfig_hmac(info, ca):
    from azure.appconfiguration import AzureAppConfigurationClient

    store = info["endpoints"]["appConfigurations"]["appcs-partners"]
    client = AzureAppConfigurationClient.from_connection_string(
        store["connectionString"], connection_verify=ca)
    return {"store": "appcs-partners", "done": app_configuration(client, "oracle-hmac")}


def appconfig_entra(info, ca):
    from azure.appconfiguration import AzureAppConfigurationClient

    store = info["endpoints"]["appConfigurations"]["appcs-consumers"]
    cred = credential(info)
    client = AzureAppConfigurationClient(store["endpoint"], cred, connection_verify=ca)
    done = app_configuration(client, "oracle-entra")
    assert cred.requests >= 1
    return {"store": "appcs-consumers", "done": done, "tokens": cred.requests}


def web_client(info, ca):
    from azure.mgmt.web import WebSiteManagementClient

    return WebSiteManagementClient(
        credential(info),
        SUBSCRIPTION,
        base_url=info["endpoints"]["resourceManager"],
        credential_scopes=[ARM_SCOPE],
        connection_verify=ca,
    )


def replace_and_read_back(listed, update, read, extra):
    """list, then a whole-set PUT with one setting added and one removed, then list again."""
    before = dict(listed.properties)
    assert before, "the demo site has settings"
    removed = sorted(before)[0]
    wanted = {k: v for k, v in before.items() if k != removed}
    wanted.update(extra)
    from azure.mgmt.web.models import StringDictionary

    answer = update(StringDictionary(properties=wanted))
    assert dict(answer.properties) == wanted, answer
    after = read()
    assert dict(after.properties) == wanted, "the PUT replaces the whole set"
    return {"before": sorted(before), "after": sorted(after.properties), "removed": removed}


def arm_sites(info, ca):
    client = web_client(info, ca)
    rg, name = SUBSCRIPTION_RG_SITES["function_app"]
    listed = client.web_apps.list_application_settings(rg, name)
    assert listed.type == "Microsoft.Web/sites/config", listed.type
    result = {"functionApp": replace_and_read_back(
        listed,
        lambda s: client.web_apps.update_application_settings(rg, name, s),
        lambda: client.web_apps.list_application_settings(rg, name),
        {"ORACLE_SETTING": "function app"},
    )}
    rg, name = SUBSCRIPTION_RG_SITES["web_app"]
    result["webApp"] = replace_and_read_back(
        client.web_apps.list_application_settings(rg, name),
        lambda s: client.web_apps.update_application_settings(rg, name, s),
        lambda: client.web_apps.list_application_settings(rg, name),
        {"ORACLE_SETTING": "web app"},
    )
    try:
        client.web_apps.list_application_settings(rg, name + "-missing")
        raise AssertionError("a missing site must be 404")
    except ResourceNotFoundError as e:
        assert e.error.code == "ResourceNotFound", e.error
    rg, name = SUBSCRIPTION_RG_SITES["forbidden"]
    try:
        client.web_apps.list_application_settings(rg, name)
        raise AssertionError("a site without a role must be 403")
    except HttpResponseError as e:
        assert e.status_code == 403 and e.error.code == "AuthorizationFailed", e
    return result


def arm_slots(info, ca):
    client = web_client(info, ca)
    result = {}
    for kind in ["function_app", "web_app"]:
        rg, name = SUBSCRIPTION_RG_SITES[kind]
        listed = client.web_apps.list_application_settings_slot(rg, name, "staging")
        assert listed.type == "Microsoft.Web/sites/slots/config", listed.type
        result[kind] = replace_and_read_back(
            listed,
            lambda s: client.web_apps.update_application_settings_slot(rg, name, "staging", s),
            lambda: client.web_apps.list_application_settings_slot(rg, name, "staging"),
            {"ORACLE_SETTING": f"{kind} slot"},
        )
    rg, name = SUBSCRIPTION_RG_SITES["web_app"]
    try:
        client.web_apps.list_application_settings_slot(rg, name, "missing")
        raise AssertionError("a missing slot must be 404")
    except ResourceNotFoundError:
        pass
    return result


def arm_static_sites(info, ca):
    client = web_client(info, ca)
    rg, name = SUBSCRIPTION_RG_SITES["static_site"]
    listed = client.static_sites.list_static_site_app_settings(rg, name)
    assert listed.type == "Microsoft.Web/staticSites/config", listed.type
    return {"staticSite": replace_and_read_back(
        listed,
        lambda s: client.static_sites.create_or_update_static_site_app_settings(rg, name, s),
        lambda: client.static_sites.list_static_site_app_settings(rg, name),
        {"ORACLE_SETTING": "static site"},
    )}


GROUPS = {
    "appconfig-hmac": appconfig_hmac,
    "appconfig-entra": appconfig_entra,
    "arm-sites": arm_sites,
    "arm-slots": arm_slots,
    "arm-static-sites": arm_static_sites,
}


def main():
    group, path = sys.argv[1], sys.argv[2]
    info, ca = load(path)
    print(json.dumps({"group": group, "result": GROUPS[group](info, ca)}))


if __name__ == "__main__":
    main()
