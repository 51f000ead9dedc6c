//! `[signature]`: the bundle's path, how it is signed, and the key or roots it must verify with,
//! parsed now so a bad key is a manifest error rather than a failed verification later.

use std::ops::Range;

use super::{
    context::Ctx, raw::RawSignature, rules::validate_rel_path, ManifestProblem, SignatureMethod,
    SignatureSpec,
};
use crate::{
    error::{Error, Result},
    signature::VerifyKey,
};

const OMS_1_0: &str = "oms-1.0";

fn bad(ctx: &Ctx<'_>, span: Range<usize>, message: impl Into<String>) -> Error {
    ctx.err(Some(span), ManifestProblem::BadSignature(message.into()))
}

pub(super) fn convert_signature(ctx: &Ctx<'_>, s: RawSignature) -> Result<SignatureSpec> {
    // Errors about a missing field point at the table (its `path =` line).
    let table = ctx
        .line_of_key("signature", "path")
        .unwrap_or(s.path.span());
    if let Some(f) = s.format.as_ref().filter(|f| f.get_ref() != OMS_1_0) {
        return Err(bad(
            ctx,
            f.span(),
            format!("format '{}' (only \"{OMS_1_0}\" is supported)", f.get_ref()),
        ));
    }
    let path = s.path.get_ref().clone();
    validate_rel_path(&path)
        .map_err(|why| bad(ctx, s.path.span(), format!("path '{path}': {why}")))?;
    let method = method(ctx, &s, &table)?;
    let (key, key_span) = verify_key(ctx, &s, method, table)?;
    let key_hint = key_hint(ctx, &s, &key, key_span)?;
    let expect_subject_digest = s
        .expect_subject_digest
        .as_ref()
        .map(|d| ctx.digest(d))
        .transpose()?;
    Ok(SignatureSpec {
        format: OMS_1_0.to_string(),
        path,
        method,
        public_key_pem: s.public_key_pem.map(|p| p.into_inner()),
        key_hint,
        ca_chain_pem: s.ca_chain_pem.map(|p| p.into_inner()),
        expect_subject_digest,
        key: Some(key),
    })
}

/// `method`, or the one implied by which of `public_key_pem` and `ca_chain_pem` is given.
fn method(ctx: &Ctx<'_>, s: &RawSignature, table: &Range<usize>) -> Result<SignatureMethod> {
    match (&s.method, &s.public_key_pem, &s.ca_chain_pem) {
        (_, Some(_), Some(k)) => Err(bad(
            ctx,
            k.span(),
            "give public_key_pem or ca_chain_pem, not both",
        )),
        (Some(m), _, _) => match m.get_ref().as_str() {
            "key" => Ok(SignatureMethod::Key),
            "certificate" => Ok(SignatureMethod::Certificate),
            "sigstore" => Err(bad(
                ctx,
                m.span(),
                "method \"sigstore\" (keyless) is not supported: candor verifies bundles signed with a key or a certificate",
            )),
            other => Err(bad(
                ctx,
                m.span(),
                format!("unknown method '{other}' (expected key or certificate)"),
            )),
        },
        (None, Some(_), None) => Ok(SignatureMethod::Key),
        (None, None, Some(_)) => Ok(SignatureMethod::Certificate),
        (None, None, None) => Err(bad(
            ctx,
            table.clone(),
            "needs public_key_pem (method key) or ca_chain_pem (method certificate)",
        )),
    }
}

/// The method's key or roots, parsed, and the span of the PEM they came from.
fn verify_key(
    ctx: &Ctx<'_>,
    s: &RawSignature,
    method: SignatureMethod,
    table: Range<usize>,
) -> Result<(VerifyKey, Range<usize>)> {
    type Parse = fn(&str) -> std::result::Result<VerifyKey, String>;
    let (pem, method_name, field, parse): (_, _, _, Parse) = match method {
        SignatureMethod::Key => (
            &s.public_key_pem,
            "key",
            "public_key_pem",
            VerifyKey::from_public_key_pem,
        ),
        SignatureMethod::Certificate => (
            &s.ca_chain_pem,
            "certificate",
            "ca_chain_pem",
            VerifyKey::from_ca_pem,
        ),
    };
    let Some(pem) = pem else {
        return Err(bad(
            ctx,
            table,
            format!("method {method_name} needs {field}"),
        ));
    };
    let key = parse(pem.get_ref()).map_err(|e| bad(ctx, pem.span(), format!("{field}: {e}")))?;
    Ok((key, pem.span()))
}

/// `key_hint`, if given: a digest, for a public key, equal to that key's hint.
fn key_hint(
    ctx: &Ctx<'_>,
    s: &RawSignature,
    key: &VerifyKey,
    key_span: Range<usize>,
) -> Result<Option<String>> {
    let Some(h) = &s.key_hint else {
        return Ok(None);
    };
    let VerifyKey::PublicKey(k) = key else {
        return Err(bad(ctx, h.span(), "key_hint goes with public_key_pem"));
    };
    ctx.digest(h)?;
    let hint = h.get_ref();
    if *hint != k.hint() {
        return Err(bad(
            ctx,
            key_span,
            format!(
                "key_hint {hint} does not match public_key_pem (its hint is {})",
                k.hint()
            ),
        ));
    }
    Ok(Some(hint.clone()))
}
