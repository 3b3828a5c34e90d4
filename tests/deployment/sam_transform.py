"""Prints a template as CloudFormation receives it (after SAM's transform, if it has one), as JSON.

Offline: SAM's own translator (the `samtranslator` package that `sam validate` runs) with its
bundled map of AWS managed policies, so no AWS account or network is needed. Local CodeUri
paths are replaced by a placeholder S3 URI, as `sam validate` does.

Usage: .venv/bin/python tests/deployment/sam_transform.py template.yaml
"""

import json
import sys

import boto3
from samtranslator.internal.managed_policies import get_bundled_managed_policy_map
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    if "Transform" not in template:
        # Plain CloudFormation: the same JSON form (intrinsics in their long names).
        json.dump(template, sys.stdout, indent=1, sort_keys=True, default=str)
        return
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://placeholder-bucket/code.zip"
    managed = get_bundled_managed_policy_map("aws")
    # The translator wants a region for pseudo parameters; no call is made with this session.
    session = boto3.session.Session(region_name="us-east-1")
    transformed = Translator(None, Parser(), boto_session=session).translate(
        template,
        parameter_values={},
        get_managed_policy_map=lambda: managed,
    )
    json.dump(transformed, sys.stdout, indent=1, sort_keys=True, default=str)


if __name__ == "__main__":
    main(sys.argv[1])
