//! `portico ctl admins` (dashboard users, as `emqx ctl admins`) and `portico ctl users` (the
//! MQTT clients' built-in database authenticator), through `/api/v5/users` and
//! `/api/v5/authentication/password_based:built_in_database/users`.

use clap::Subcommand;
use hyper::Method;
use serde_json::json;

use super::client::{Ctl, CtlError, encode, text};

/// The authenticator `users` manages, URL-encoded.
const AUTHN_USERS: &str = "/api/v5/authentication/password_based%3Abuilt_in_database/users";

#[derive(Debug, Subcommand)]
pub(crate) enum AdminsCommand {
    /// Every dashboard user.
    List,
    /// Add a dashboard user (an administrator).
    Add {
        username: String,
        /// At least 8 characters.
        password: String,
        /// Shown in the list.
        description: Option<String>,
    },
    /// Delete a dashboard user (not the last one); their sessions end.
    Del { username: String },
    /// Set a dashboard user's password (the old one is not needed); their sessions end.
    Passwd { username: String, password: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// Every user of the built-in database authenticator.
    List,
    /// Add a user.
    Add {
        /// The user name or client id (per the authenticator's `user_id_type`).
        user_id: String,
        password: String,
        /// Superusers skip authorization.
        #[arg(long)]
        superuser: bool,
    },
    /// Delete a user.
    Del { user_id: String },
    /// Set a user's password.
    Passwd { user_id: String, password: String },
}

impl Ctl {
    pub(crate) async fn admins(&self, command: &AdminsCommand) -> Result<String, CtlError> {
        match command {
            AdminsCommand::List => {
                let users = self.get("/api/v5/users").await?;
                let rows = users.as_array().cloned().unwrap_or_default();
                self.render_rows(rows, |u| {
                    format!("{} description:{}", text(&u["username"]), text(&u["description"]))
                })
            }
            AdminsCommand::Add {
                username,
                password,
                description,
            } => {
                let body = json!({
                    "username": username,
                    "password": password,
                    "description": description.as_deref().unwrap_or_default(),
                });
                let user = self.call(Method::POST, "/api/v5/users", Some(body)).await?;
                self.render(user, |u| format!("dashboard user {} added\n", text(&u["username"])))
            }
            AdminsCommand::Del { username } => {
                let path = format!("/api/v5/users/{}", encode(username));
                self.call(Method::DELETE, &path, None).await?;
                Ok(self.done(&format!("dashboard user {username} deleted")))
            }
            AdminsCommand::Passwd { username, password } => {
                let path = format!("/api/v5/users/{}/password", encode(username));
                let body = json!({"password": password});
                self.call(Method::PUT, &path, Some(body)).await?;
                Ok(self.done(&format!("password of dashboard user {username} changed")))
            }
        }
    }

    pub(crate) async fn users(&self, command: &UsersCommand) -> Result<String, CtlError> {
        match command {
            UsersCommand::List => {
                let rows = self.list_all(AUTHN_USERS, &[]).await?;
                self.render_rows(rows, |u| {
                    format!("{} superuser:{}", text(&u["user_id"]), text(&u["is_superuser"]))
                })
            }
            UsersCommand::Add {
                user_id,
                password,
                superuser,
            } => {
                let body = json!({"user_id": user_id, "password": password, "is_superuser": superuser});
                let user = self.call(Method::POST, AUTHN_USERS, Some(body)).await?;
                self.render(user, |u| format!("user {} added\n", text(&u["user_id"])))
            }
            UsersCommand::Del { user_id } => {
                let path = format!("{AUTHN_USERS}/{}", encode(user_id));
                self.call(Method::DELETE, &path, None).await?;
                Ok(self.done(&format!("user {user_id} deleted")))
            }
            UsersCommand::Passwd { user_id, password } => {
                let path = format!("{AUTHN_USERS}/{}", encode(user_id));
                let body = json!({"password": password});
                self.call(Method::PUT, &path, Some(body)).await?;
                Ok(self.done(&format!("password of user {user_id} changed")))
            }
        }
    }
}
