"""Drives the sandbox's Apigee X double, and its OAuth token endpoint, with Google's official
Python client (tests/sdk_oracle.rs): google-api-python-client built from the Apigee v1 discovery
document it ships (no network), google-auth's service-account credentials (a signed JWT
exchanged at the key's token_uri), over httplib2 trusting the sandbox CA.

    python apigee_oracle.py SANDBOX_JSON SERVICE_ACCOUNT_JSON ORGANIZATION DEVELOPER

Every operation the product uses on a developer app's keys, each asserted on what the client
returns; one JSON object on stdout. Any failure is an exception and a non-zero exit.
"""

import json
import secrets
import sys

import google_auth_httplib2
import httplib2
from google.oauth2 import service_account
from googleapiclient import discovery, discovery_cache
from googleapiclient.errors import HttpError

APP = "APIKeyRotator_TestApp1_Sandbox"  # its product, healthcheck-product, is approvalType manual
PRODUCT = "healthcheck-product"
MARK = "ApiKeyRotatorState"


def main(sandbox_json, sa_json, organization, developer):
    with open(sandbox_json) as f:
        sandbox = json.load(f)
    with open(sa_json) as f:
        info = json.load(f)
    creds = service_account.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    http = google_auth_httplib2.AuthorizedHttp(
        creds, http=httplib2.Http(ca_certs=sandbox["caCertFile"], timeout=30)
    )
    # The discovery document the client ships. Its keys resource has both a method `create`
    # (POST .../keys, what the product sends) and a nested resource `create` (the legacy alias
    # POST .../keys/create); the client lets the resource shadow the method, so the alias is
    # left out to reach the method.
    doc = json.loads(discovery_cache.get_static_doc("apigee", "v1"))
    keys_doc = doc["resources"]["organizations"]["resources"]["developers"]["resources"]["apps"][
        "resources"
    ]["keys"]
    del keys_doc["resources"]["create"]
    apigee = discovery.build_from_document(
        doc,
        http=http,
        client_options={"api_endpoint": sandbox["endpoints"]["apigee"].rstrip("/") + "/"},
    )
    apps = apigee.organizations().developers().apps()
    keys = apps.keys()
    app_name = f"organizations/{organization}/developers/{developer}/apps/{APP}"
    done = []

    app = apps.get(name=app_name).execute()
    assert app["name"] == APP, app
    assert app["credentials"], app
    done.append("developers.apps.get")

    try:
        apps.get(name=f"organizations/{organization}/developers/{developer}/apps/no-such-app").execute()
        raise AssertionError("an unknown app was found")
    except HttpError as e:
        assert e.resp.status == 404, e
    done.append("developers.apps.get (404)")

    key = "oracle" + secrets.token_hex(12)
    created = keys.create(
        parent=app_name,
        body={
            "consumerKey": key,
            "consumerSecret": secrets.token_hex(16),
            "expiresInSeconds": "7776000",
            "attributes": [{"name": MARK, "value": "unfinished"}],
        },
    ).execute()
    assert created["consumerKey"] == key, created
    assert created.get("status") == "approved", created
    done.append("developers.apps.keys.create")

    key_name = f"{app_name}/keys/{key}"
    got = keys.get(name=key_name).execute()
    assert got["consumerKey"] == key and not got.get("apiProducts"), got
    done.append("developers.apps.keys.get")

    updated = keys.updateDeveloperAppKey(
        name=key_name,
        body={"apiProducts": [PRODUCT], "attributes": [{"name": MARK, "value": "productsAttached"}]},
    ).execute()
    products = {p["apiproduct"]: p["status"] for p in updated.get("apiProducts", [])}
    assert products == {PRODUCT: "pending"}, updated
    marks = {a["name"]: a["value"] for a in updated.get("attributes", [])}
    assert marks == {MARK: "productsAttached"}, updated
    done.append("developers.apps.keys.updateDeveloperAppKey")

    keys.apiproducts().updateDeveloperAppKeyApiProduct(
        name=f"{key_name}/apiproducts/{PRODUCT}", action="approve"
    ).execute()
    got = keys.get(name=key_name).execute()
    products = {p["apiproduct"]: p["status"] for p in got.get("apiProducts", [])}
    assert products == {PRODUCT: "approved"}, got
    done.append("developers.apps.keys.apiproducts.updateDeveloperAppKeyApiProduct")

    keys.delete(name=key_name).execute()
    try:
        keys.get(name=key_name).execute()
        raise AssertionError("a deleted key was found")
    except HttpError as e:
        assert e.resp.status == 404, e
    done.append("developers.apps.keys.delete")

    print(json.dumps({"operations": done, "tokenRefreshed": creds.valid}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
