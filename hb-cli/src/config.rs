//! Node options, layered. One rule, lowest to highest precedence:
//!
//! 1. built-in defaults;
//! 2. the config file: `--config FILE`, else `$HB_CONFIG`, else `config.flat` or `config.json`
//!    in the data directory (HyperBEAM's formats: `key: value` lines, or a JSON object);
//! 3. environment variables: `HB_PORT`, `HB_KEY` (wallet file), and any `HB_<NAME>` as option
//!    `<name>` (lower case, `_` → `-`);
//! 4. command-line flags.
//!
//! Keys are lower-case dash form (`max-body-bytes`); `_` in file keys is read as `-`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use ao_core::{Key, Message, Value, codec};

/// Options that name files, with their defaults relative to the data directory.
pub(crate) const WALLET_OPTION: &str = "priv-key-location";

/// Reads a config file (flat or JSON, by extension or content).
pub(crate) fn read_file(path: &Path) -> Result<Message> {
    let text =
        std::fs::read(path).with_context(|| format!("reading config file {}", path.display()))?;
    let is_json =
        path.extension().is_some_and(|e| e == "json") || text.trim_ascii_start().starts_with(b"{");
    let msg = if is_json {
        codec::from_json(&text).with_context(|| format!("parsing {} as JSON", path.display()))?
    } else {
        codec::from_flat(&text)
            .with_context(|| format!("parsing {} as flat key: value lines", path.display()))?
    };
    Ok(dash_keys(msg))
}

fn dash_keys(msg: Message) -> Message {
    let mut out = Message::new();
    for (k, v) in msg.iter() {
        out.insert(Key::new(&k.as_str().replace('_', "-")), v.clone());
    }
    for (k, v) in msg.private_fields() {
        out.insert(Key::new(&k.as_str().replace('_', "-")), v.clone());
    }
    out
}

/// Options from the environment.
pub(crate) fn from_env(vars: impl Iterator<Item = (String, String)>) -> Message {
    let mut out = Message::new();
    for (k, v) in vars {
        let Some(name) = k.strip_prefix("HB_") else {
            continue;
        };
        let key = match name {
            "KEY" => WALLET_OPTION.to_owned(),
            "CONFIG" => continue,
            other => other.to_ascii_lowercase().replace('_', "-"),
        };
        out.insert(Key::new(&key), Value::from(v));
    }
    out
}

/// Overlays `top` on `base`.
pub(crate) fn overlay(mut base: Message, top: &Message) -> Message {
    for (k, v) in top.iter() {
        base.insert(k.clone(), v.clone());
    }
    for (k, v) in top.private_fields() {
        base.insert(k.clone(), v.clone());
    }
    base
}

/// The config file to read, if any.
pub(crate) fn config_file(flag: Option<&Path>, data_dir: &Path) -> Result<Option<PathBuf>> {
    if let Some(p) = flag {
        if !p.exists() {
            bail!("config file {} does not exist", p.display());
        }
        return Ok(Some(p.to_owned()));
    }
    if let Ok(p) = std::env::var("HB_CONFIG") {
        let p = PathBuf::from(p);
        if !p.exists() {
            bail!(
                "config file {} (from HB_CONFIG) does not exist",
                p.display()
            );
        }
        return Ok(Some(p));
    }
    for name in ["config.flat", "config.json"] {
        let p = data_dir.join(name);
        if p.exists() {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// Builds the node options: defaults ← file ← environment ← flags.
pub(crate) fn load(
    flag_config: Option<&Path>,
    data_dir: &Path,
    flags: &Message,
) -> Result<Message> {
    let defaults = Message::new()
        .with("port", 8734i64)
        .with("initialized", Value::atom("true"))
        .with("default-codec", "httpsig@1.0")
        .with("hashpath", "update");
    let mut opts = defaults;
    if let Some(file) = config_file(flag_config, data_dir)? {
        opts = overlay(opts, &read_file(&file)?);
    }
    opts = overlay(opts, &from_env(std::env::vars()));
    opts = overlay(opts, flags);
    Ok(opts)
}

/// The wallet file: the `priv-key-location` option (relative to the data directory), else
/// `wallet.json` in the data directory.
pub(crate) fn wallet_path(opts: &Message, data_dir: &Path) -> PathBuf {
    match opts.private(WALLET_OPTION).and_then(Value::as_str) {
        Some(p) => {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { data_dir.join(p) }
        }
        None => data_dir.join("wallet.json"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_file_then_env_then_flags() {
        let dir = std::env::temp_dir().join(format!("hb-cli-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.flat"),
            "port: 1234\nhost: https://ao.computer\nawait_inprogress: false\n",
        )
        .unwrap();
        let file = read_file(&dir.join("config.flat")).unwrap();
        assert_eq!(file.get_str("port"), Some("1234"));
        assert_eq!(file.get_str("await-inprogress"), Some("false"));
        let env = from_env(
            [
                ("HB_PORT".to_owned(), "5678".to_owned()),
                ("HB_KEY".to_owned(), "k.json".to_owned()),
            ]
            .into_iter(),
        );
        let merged = overlay(overlay(Message::new().with("port", 8734i64), &file), &env);
        assert_eq!(merged.get_str("port"), Some("5678"));
        assert_eq!(merged.get_str("host"), Some("https://ao.computer"));
        assert_eq!(wallet_path(&merged, &dir), dir.join("k.json"));
        let flags = Message::new().with("port", 9000i64);
        assert_eq!(
            overlay(merged, &flags).get("port"),
            Some(&Value::Integer(9000))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
