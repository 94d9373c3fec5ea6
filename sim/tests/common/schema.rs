//! A small JSON-shape checker holding the response schemas the tests validate, copied by
//! hand from the Splice OpenAPI files in /work/shared/splice/openapi (release 0.4.x):
//! required fields, optional fields and types. Each function names its file and schema.

use serde_json::Value;

/// A JSON shape.
#[derive(Clone, Debug)]
pub enum Shape {
    Str,
    /// A string with base64 content.
    Base64,
    Int,
    Bool,
    /// One of these strings.
    Enum(Vec<&'static str>),
    Arr(Box<Shape>),
    /// Object: required fields, optional fields (others allowed, as OpenAPI allows).
    Obj(Vec<(&'static str, Shape)>, Vec<(&'static str, Shape)>),
    /// Exactly one of the alternatives matches (`oneOf`).
    OneOf(Vec<Shape>),
    Any,
}

fn arr(s: Shape) -> Shape {
    Shape::Arr(Box::new(s))
}

/// Checks `v` against `shape`; the error names the JSON path.
pub fn check(v: &Value, shape: &Shape) -> Result<(), String> {
    check_at(v, shape, "$")
}

fn check_at(v: &Value, shape: &Shape, path: &str) -> Result<(), String> {
    use base64::Engine as _;
    let fail = |what: &str| Err(format!("{path}: expected {what}, got {v}"));
    match shape {
        Shape::Any => Ok(()),
        Shape::Str => v.as_str().map(|_| ()).map_or_else(|| fail("string"), Ok),
        Shape::Base64 => match v.as_str() {
            Some(s) if base64::engine::general_purpose::STANDARD.decode(s).is_ok() => Ok(()),
            _ => fail("base64 string"),
        },
        Shape::Int => {
            if v.is_i64() || v.is_u64() {
                Ok(())
            } else {
                fail("integer")
            }
        }
        Shape::Bool => v.as_bool().map(|_| ()).map_or_else(|| fail("boolean"), Ok),
        Shape::Enum(values) => match v.as_str() {
            Some(s) if values.contains(&s) => Ok(()),
            _ => fail(&format!("one of {values:?}")),
        },
        Shape::Arr(item) => match v.as_array() {
            Some(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, x)| check_at(x, item, &format!("{path}[{i}]"))),
            None => fail("array"),
        },
        Shape::Obj(required, optional) => {
            let Some(obj) = v.as_object() else {
                return fail("object");
            };
            for (k, s) in required {
                match obj.get(*k) {
                    Some(x) => check_at(x, s, &format!("{path}.{k}"))?,
                    None => return Err(format!("{path}: missing required field {k}")),
                }
            }
            for (k, s) in optional {
                if let Some(x) = obj.get(*k) {
                    check_at(x, s, &format!("{path}.{k}"))?;
                }
            }
            Ok(())
        }
        Shape::OneOf(alts) => {
            let n = alts.iter().filter(|a| check_at(v, a, path).is_ok()).count();
            if n == 1 {
                Ok(())
            } else {
                Err(format!("{path}: {n} alternatives of oneOf match {v}"))
            }
        }
    }
}

/// common-external.yaml `ErrorResponse`.
pub fn error_response() -> Shape {
    Shape::Obj(vec![("error", Shape::Str)], vec![])
}

/// validator-internal.yaml `GetValidatorUserInfoResponse`.
pub fn validator_user_info() -> Shape {
    Shape::Obj(
        vec![
            ("party_id", Shape::Str),
            ("user_name", Shape::Str),
            ("featured", Shape::Bool),
        ],
        vec![],
    )
}

/// validator-internal.yaml `ListUsersResponse`.
pub fn list_users() -> Shape {
    Shape::Obj(vec![("usernames", arr(Shape::Str))], vec![])
}

/// validator-internal.yaml `OnboardUserResponse`.
pub fn onboard_user() -> Shape {
    Shape::Obj(vec![("party_id", Shape::Str)], vec![])
}

/// common-internal.yaml `NodeKey` = oneOf `KeyPair` | `KmsKeyId`.
fn node_key() -> Shape {
    // KeyPair: required keyPair; KmsKeyId: required type (enum) and keyId.
    Shape::OneOf(vec![
        Shape::Obj(vec![("keyPair", Shape::Str)], vec![("name", Shape::Str)]),
        Shape::Obj(
            vec![
                ("type", Shape::Enum(vec!["signing", "encryption"])),
                ("keyId", Shape::Str),
            ],
            vec![("name", Shape::Str)],
        ),
    ])
}

/// common-internal.yaml `NodeIdentitiesDump`.
pub fn node_identities_dump() -> Shape {
    Shape::Obj(
        vec![
            ("id", Shape::Str),
            ("keys", arr(node_key())),
            ("authorizedStoreSnapshot", Shape::Base64),
        ],
        vec![("version", Shape::Str)],
    )
}

/// common-internal.yaml `ParticipantUsersData` (with `ParticipantIdentityProvider`,
/// `ParticipantUser`, `ParticipantUserRight`, `ParticipantUserAnnotation`).
fn participant_users_data() -> Shape {
    let provider = Shape::Obj(
        vec![
            ("id", Shape::Str),
            ("isDeactivated", Shape::Bool),
            ("jwksUrl", Shape::Str),
            ("issuer", Shape::Str),
            ("audience", Shape::Str),
        ],
        vec![],
    );
    let right = Shape::Obj(
        vec![(
            "kind",
            Shape::Enum(vec![
                "participantAdmin",
                "canActAs",
                "canReadAs",
                "identityProviderAdmin",
                "canReadAsAnyParty",
            ]),
        )],
        vec![("party", Shape::Str)],
    );
    let annotation = Shape::Obj(vec![("key", Shape::Str), ("value", Shape::Str)], vec![]);
    let user = Shape::Obj(
        vec![
            ("id", Shape::Str),
            ("rights", arr(right)),
            ("isDeactivated", Shape::Bool),
            ("annotations", arr(annotation)),
        ],
        vec![
            ("primaryParty", Shape::Str),
            ("identityProviderId", Shape::Str),
        ],
    );
    Shape::Obj(
        vec![("identityProviders", arr(provider)), ("users", arr(user))],
        vec![],
    )
}

/// validator-internal.yaml `DomainMigrationDump` (with `Dar`).
pub fn domain_migration_dump() -> Shape {
    let dar = Shape::Obj(
        vec![("hash", Shape::Str), ("content", Shape::Base64)],
        vec![],
    );
    Shape::Obj(
        vec![
            ("participant", node_identities_dump()),
            ("participant_users", participant_users_data()),
            ("acs_snapshot", Shape::Base64),
            ("acs_timestamp", Shape::Str),
            ("dars", arr(dar)),
            ("migration_id", Shape::Int),
            ("domain_id", Shape::Str),
            ("created_at", Shape::Str),
        ],
        vec![],
    )
}

/// validator-internal.yaml `GetValidatorDomainDataSnapshotResponse`.
pub fn data_snapshot_response() -> Shape {
    Shape::Obj(
        vec![
            ("data_snapshot", domain_migration_dump()),
            ("migration_id", Shape::Int),
        ],
        vec![],
    )
}

/// wallet-internal.yaml `GetBalanceResponse`.
pub fn balance() -> Shape {
    Shape::Obj(
        vec![
            ("round", Shape::Int),
            ("effective_unlocked_qty", Shape::Str),
            ("effective_locked_qty", Shape::Str),
            ("total_holding_fees", Shape::Str),
        ],
        vec![],
    )
}
