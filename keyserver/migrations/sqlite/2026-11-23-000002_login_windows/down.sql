DROP TABLE login_windows;
