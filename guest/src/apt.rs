//! Debian's apt, run with a private configuration that lives entirely inside
//! keel's cache directory: its own sources list, package lists and download
//! cache, and the riscv64 architecture. The host's apt setup is only read
//! (its archive URI, and its apt.conf.d for proxies and similar), never
//! written.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::PullError;

pub const FALLBACK_URI: &str = "http://deb.debian.org/debian";
pub const SUITE: &str = "trixie";
pub const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Finds the main Debian archive URI the host uses: the deb822
/// `debian.sources` first, then a one-line `sources.list`.
pub fn host_archive_uri() -> Option<String> {
    let deb822 = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").ok();
    let one_line = fs::read_to_string("/etc/apt/sources.list").ok();
    deb822
        .as_deref()
        .and_then(uri_from_deb822)
        .or_else(|| one_line.as_deref().and_then(uri_from_one_line))
}

/// Security and other side archives live at their own URIs; keel wants the
/// one that carries the release itself.
fn is_main_archive(uri: &str, suites: &[&str]) -> bool {
    let usable = ["http://", "https://", "file:"].iter().any(|s| uri.starts_with(s));
    usable
        && !uri.trim_end_matches('/').ends_with("-security")
        && !suites.iter().any(|s| s.contains("-security"))
}

/// Parses deb822 `.sources` text (paragraphs of `Field: value` lines,
/// continuation lines start with whitespace, `#` comments).
pub fn uri_from_deb822(text: &str) -> Option<String> {
    // Paragraphs are separated by blank lines; comments don't end one.
    let mut paragraphs: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        let fields = paragraphs.last_mut()?;
        if line.trim().is_empty() {
            if !fields.is_empty() {
                paragraphs.push(Vec::new());
            }
        } else if line.trim_start().starts_with('#') {
            continue;
        } else if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    paragraphs.iter().find_map(|fields| {
        let get = |k: &str| fields.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let types = get("types").unwrap_or("");
        if !types.split_whitespace().any(|t| t == "deb") || get("enabled") == Some("no") {
            return None;
        }
        let suites: Vec<&str> = get("suites").unwrap_or("").split_whitespace().collect();
        get("uris")
            .unwrap_or("")
            .split_whitespace()
            .find(|u| is_main_archive(u, &suites))
            .map(|u| u.trim_end_matches('/').to_string())
    })
}

/// Parses one-line style `deb [options] URI suite components...`.
pub fn uri_from_one_line(text: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb") else {
            continue;
        };
        if !rest.starts_with([' ', '\t']) {
            continue; // deb-src
        }
        let mut rest = rest.trim_start();
        if rest.starts_with('[') {
            // Options may contain spaces: "[ arch=amd64 signed-by=... ]".
            rest = rest.split_once(']').map(|(_, r)| r.trim_start())?;
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        if is_main_archive(uri, &[suite]) {
            return Some(uri.trim_end_matches('/').to_string());
        }
    }
    None
}

/// Paths of the private apt state below `<cache>/apt`.
pub struct Apt {
    pub dir: PathBuf,
    pub uri: String,
    /// More `-o` options (tests turn apt's retries off).
    pub extra: Vec<String>,
}

impl Apt {
    /// Creates the private configuration files and directories.
    pub fn prepare(cache_root: &Path, uri: &str) -> Result<Apt, PullError> {
        let dir = cache_root.join("apt");
        for sub in ["lists/partial", "cache/archives/partial"] {
            let d = dir.join(sub);
            fs::create_dir_all(&d)
                .map_err(|e| PullError::io(format!("creating {}", d.display()), e))?;
        }
        if !Path::new(KEYRING).exists() {
            return Err(PullError::Keyring { path: KEYRING.into() });
        }
        let write = |name: &str, text: String| -> Result<(), PullError> {
            let p = dir.join(name);
            fs::write(&p, text).map_err(|e| PullError::io(format!("writing {}", p.display()), e))
        };
        write(
            "sources.list",
            format!("deb [arch=riscv64 signed-by={KEYRING}] {uri} {SUITE} main\n"),
        )?;
        // An empty dpkg status: the host's installed packages (another
        // architecture) have nothing to do with the guest's.
        write("status", String::new())?;
        // Read after the host's apt.conf.d (which may hold a proxy we want):
        // drop the host's update hooks, they are about the host's cache.
        write(
            "apt.conf",
            "#clear APT::Update::Pre-Invoke;\n\
             #clear APT::Update::Post-Invoke;\n\
             #clear APT::Update::Post-Invoke-Success;\n"
                .to_string(),
        )?;
        Ok(Apt { dir, uri: uri.to_string(), extra: Vec::new() })
    }

    fn options(&self) -> Vec<String> {
        let p = |s: &str| self.dir.join(s).display().to_string();
        let mut o = vec![
            "-c".to_string(),
            p("apt.conf"),
            format!("-oDir::Etc::sourcelist={}", p("sources.list")),
            "-oDir::Etc::sourceparts=-".into(),
            format!("-oDir::State::Lists={}", p("lists")),
            format!("-oDir::State::status={}", p("status")),
            format!("-oDir::Cache={}", p("cache")),
            "-oAPT::Architecture=riscv64".into(),
            "-oAPT::Architectures=riscv64".into(),
            "-oAcquire::Languages=none".into(),
            "-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::CNF::DefaultEnabled=false".into(),
            "-q".into(),
        ];
        // As root, apt downloads as user _apt, who can't write to a user's
        // cache directory: stay root there instead of warning.
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            o.push("-oAPT::Sandbox::User=root".into());
        }
        o.extend(self.extra.iter().cloned());
        o
    }

    fn run(&self, tool: &'static str, args: &[&str], cwd: &Path) -> Result<Output, PullError> {
        Command::new(tool)
            .args(self.options())
            .args(args)
            .current_dir(cwd)
            .env("LC_ALL", "C")
            .output()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => PullError::ToolMissing { tool },
                _ => PullError::io(format!("running {tool}"), e),
            })
    }

    /// `apt-get update`; `--error-on=any` because plain update exits 0
    /// when the archive can't be reached.
    pub fn update(&self) -> Result<(), PullError> {
        let out = self.run("apt-get", &["update", "--error-on=any"], &self.dir)?;
        if !out.status.success() {
            return Err(PullError::ArchiveUnreachable {
                uri: self.uri.clone(),
                apt_error: last_error(&out),
            });
        }
        Ok(())
    }

    /// `apt-cache show` of the candidate version: the package's fields.
    pub fn show(&self, package: &str) -> Result<Vec<(String, String)>, PullError> {
        let out = self.run("apt-cache", &["show", "--no-all-versions", package], &self.dir)?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || text.trim().is_empty() {
            return Err(PullError::PackageMissing {
                package: package.into(),
                uri: self.uri.clone(),
            });
        }
        Ok(parse_fields(&text))
    }

    /// `apt-get download` into `dest`; returns the .deb's path.
    pub fn download(&self, package: &str, dest: &Path) -> Result<PathBuf, PullError> {
        let out = self.run("apt-get", &["download", package], dest)?;
        if !out.status.success() {
            return Err(PullError::Download {
                package: package.into(),
                apt_error: last_error(&out),
            });
        }
        let prefix = format!("{package}_");
        let rd = fs::read_dir(dest)
            .map_err(|e| PullError::io(format!("reading {}", dest.display()), e))?;
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && name.ends_with(".deb") {
                return Ok(ent.path());
            }
        }
        Err(PullError::Download {
            package: package.into(),
            apt_error: "apt-get reported success but left no .deb".into(),
        })
    }
}

/// `Field: value` pairs of one control paragraph (the first one).
pub fn parse_fields(text: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            continue; // continuation of a long description
        }
        if let Some((k, v)) = line.split_once(':') {
            fields.push((k.to_string(), v.trim().to_string()));
        }
    }
    fields
}

pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The `linux-image-<version>` package a metapackage's `Depends:` names.
pub fn kernel_package_from_depends(depends: &str) -> Option<String> {
    depends
        .split([',', '|'])
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|d| {
            d.starts_with("linux-image-") && d.chars().nth(12).is_some_and(|c| c.is_ascii_digit())
        })
        .map(str::to_string)
}

/// apt's error lines (`E: ...`), or its last line if it printed none.
pub fn last_error(out: &Output) -> String {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E: ")).collect();
    if errors.is_empty() {
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        format!("{last} ({})", out.status)
    } else {
        errors.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
";

    #[test]
    fn deb822_main_archive() {
        assert_eq!(uri_from_deb822(DEB822).as_deref(), Some("http://deb.debian.org/debian"));
        // Security first, a disabled entry, deb-src, a trailing slash and a
        // continuation line: still the main archive.
        let text = "Types: deb\nURIs: http://security.debian.org/debian-security\nSuites: trixie-security\n\n\
                    Types: deb\nEnabled: no\nURIs: http://disabled.example/debian\nSuites: trixie\n\n\
                    Types: deb-src\nURIs: http://src.example/debian\nSuites: trixie\n\n\
                    Types: deb\nURIs:\n  https://mirror.example/debian/\nSuites: trixie\n";
        assert_eq!(uri_from_deb822(text).as_deref(), Some("https://mirror.example/debian"));
        assert_eq!(uri_from_deb822("Types: deb\nURIs: cdrom:[x]/\nSuites: trixie\n"), None);
        assert_eq!(uri_from_deb822(""), None);
    }

    #[test]
    fn one_line_main_archive() {
        let text = "# comment\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb http://security.debian.org/debian-security bookworm-security main\n\
                    deb [ arch=amd64 signed-by=/k.gpg ] http://ftp.example.org/debian/ bookworm main # x\n";
        assert_eq!(uri_from_one_line(text).as_deref(), Some("http://ftp.example.org/debian"));
        assert_eq!(
            uri_from_one_line("deb http://a.example/debian trixie main").as_deref(),
            Some("http://a.example/debian")
        );
        assert_eq!(uri_from_one_line("debx http://a/ b c\n"), None);
    }

    /// apt against a closed port on loopback: the "archive unreachable" path,
    /// quickly and without the network. Skipped where apt isn't installed.
    #[test]
    fn unreachable_archive_is_reported() {
        if Command::new("apt-get").arg("--version").output().is_err() {
            eprintln!("apt-get not installed; skipping");
            return;
        }
        let dir = crate::tests::scratch_dir("apt-unreachable");
        let mut apt = Apt::prepare(&dir, "http://127.0.0.1:9/debian").unwrap();
        apt.extra.push("-oAcquire::Retries=0".into());
        let err = apt.update().unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PullError::ArchiveUnreachable { .. }), "{msg}");
        assert!(msg.contains("http://127.0.0.1:9/debian") && msg.contains("E: "), "{msg}");
        let err = apt.show("linux-image-riscv64").unwrap_err();
        assert!(matches!(err, PullError::PackageMissing { .. }), "{err}");
        // Nothing of it outside the cache directory.
        assert!(dir.join("apt/sources.list").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn control_fields_and_kernel_dep() {
        let text =
            "Package: linux-image-riscv64\nVersion: 6.12.107-1\nDescription: x\n long text: y\n\
                    Depends: linux-image-6.12.107+deb13-riscv64 (= 6.12.107-1)\n\nPackage: other\n";
        let f = parse_fields(text);
        assert_eq!(field(&f, "Version"), Some("6.12.107-1"));
        assert_eq!(field(&f, "Package"), Some("linux-image-riscv64"));
        assert_eq!(
            kernel_package_from_depends(field(&f, "Depends").unwrap()).as_deref(),
            Some("linux-image-6.12.107+deb13-riscv64")
        );
        assert_eq!(kernel_package_from_depends("linux-image-riscv64-signed, kmod"), None);
    }
}
