//! Running as root no longer than needed, and not leaving root's files behind.
//!
//! - `--user NAME` (as tcpdump's `-Z`): once the interface is open, the process becomes that
//!   user, with its groups, for good.
//! - Files mailscope creates while running as root go to the owner of the folder they are
//!   created in, so that `sudo mailscope export ... ~/out` leaves files the user can delete.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::{self, Uid, User};

/// The user named `name`: (uid, gid).
fn lookup(name: &str) -> Result<User, String> {
    User::from_name(name)
        .map_err(|e| format!("cannot look up user {name}: {e}"))?
        .ok_or_else(|| format!("no user named {name}"))
}

/// Becomes `name` for good: its groups, its group, its user; then checks that root cannot be
/// taken back.
pub fn drop_to(name: &str) -> Result<(), String> {
    if !unistd::geteuid().is_root() {
        return Err(format!(
            "--user {name} drops root's privileges after opening the interface, and mailscope \
             is not running as root"
        ));
    }
    let user = lookup(name)?;
    let c_name = CString::new(name).map_err(|_| format!("no user named {name:?}"))?;
    unistd::initgroups(&c_name, user.gid)
        .and_then(|()| unistd::setgid(user.gid))
        .and_then(|()| unistd::setuid(user.uid))
        .map_err(|e| format!("cannot become user {name}: {e}"))?;
    if unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(format!("became {name} but could take root back; stopping"));
    }
    Ok(())
}

/// Who should own what is created in `dir`, as (uid, gid), when running as root: the user
/// `--user` names (what is created before the privileges are dropped is theirs too), else the
/// owner of `dir` or of its nearest existing parent, unless that is root.
pub fn owner_for(dir: &Path, user: Option<&str>) -> Result<Option<(u32, u32)>, String> {
    if !unistd::geteuid().is_root() {
        return Ok(None);
    }
    if let Some(name) = user {
        let user = lookup(name)?;
        return Ok(Some((user.uid.as_raw(), user.gid.as_raw())));
    }
    let existing = dir
        .ancestors()
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .find_map(|d| d.metadata().ok());
    Ok(existing
        .filter(|m| m.uid() != 0)
        .map(|m| (m.uid(), m.gid())))
}

/// Makes `dir` and its missing parents; each folder made here (never one that was there
/// before) goes to `owner`.
pub fn create_dirs(dir: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && d.symlink_metadata().is_err())
        .collect();
    std::fs::create_dir_all(dir)?;
    missing.iter().rev().try_for_each(|d| hand_over(d, owner))
}

/// Makes the new folder `dir`: an existing one, or a link planted in its place, is refused.
pub fn create_dir(dir: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    std::fs::create_dir(dir)?;
    hand_over(dir, owner)
}

/// Gives `path` itself (a link is not followed) to `owner`.
fn hand_over(path: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::lchown(path, Some(uid), Some(gid)),
        None => Ok(()),
    }
}

/// Creates a new file (never over an existing one, never through a link) and gives the open
/// file to `owner`, so that nothing can be swapped in between.
pub fn create_new(path: &Path, owner: Option<(u32, u32)>) -> io::Result<File> {
    let file = OpenOptions::new().write(true).create_new(true).open(path)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    }
    Ok(file)
}
