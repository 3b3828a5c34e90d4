//! No drift between the state table's key families (`shared::state_table::keys`) and the
//! template: each resource's `dynamodb:LeadingKeys` conditions grant exactly the families that
//! list it, so a new family cannot be used without a grant, nor a grant outlive its family.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use shared::state_table::keys::FAMILIES;
use yaml_rust2::{Yaml, YamlLoader};

fn template() -> Yaml {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

/// Whether `statement` grants on the state table (`!GetAtt StateTable.Arn`; the standby
/// table's grants have leading keys too, the producers' partition keys).
fn on_state_table(statement: &yaml_rust2::yaml::Hash) -> bool {
    statement
        .get(&Yaml::String("Resource".into()))
        .and_then(Yaml::as_str)
        .is_some_and(|resource| resource.starts_with("StateTable."))
}

/// Every value listed under a `dynamodb:LeadingKeys` condition of a state-table statement
/// anywhere inside `node`.
fn leading_keys(node: &Yaml, found: &mut BTreeSet<String>) {
    match node {
        Yaml::Hash(hash) if on_state_table(hash) => collect(node, found),
        Yaml::Hash(hash) => hash.values().for_each(|value| leading_keys(value, found)),
        Yaml::Array(items) => items.iter().for_each(|item| leading_keys(item, found)),
        _ => {}
    }
}

fn collect(node: &Yaml, found: &mut BTreeSet<String>) {
    match node {
        Yaml::Hash(hash) => {
            for (key, value) in hash {
                if key.as_str() == Some("dynamodb:LeadingKeys") {
                    let values = match value {
                        Yaml::Array(items) => items.iter().collect(),
                        single => vec![single],
                    };
                    found.extend(values.iter().filter_map(|v| v.as_str()).map(String::from));
                } else {
                    collect(value, found);
                }
            }
        }
        Yaml::Array(items) => items.iter().for_each(|item| collect(item, found)),
        _ => {}
    }
}

#[test]
fn every_state_table_grant_is_a_declared_family() {
    let template = template();
    let resources = template["Resources"].as_hash().expect("Resources");
    let mut granted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, resource) in resources {
        let mut found = BTreeSet::new();
        leading_keys(resource, &mut found);
        if !found.is_empty() {
            granted.insert(name.as_str().unwrap().to_string(), found);
        }
    }
    let mut declared: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for family in FAMILIES {
        for resource in family.granted_to {
            declared
                .entry(resource.to_string())
                .or_default()
                .insert(family.leading_key.to_string());
        }
    }
    assert_eq!(
        granted, declared,
        "template grants (left) differ from shared::state_table::keys::FAMILIES (right)"
    );
}
